"""Talking to LLM endpoints: the endpoints file, asynchronous dispatch at the rate limit, progress."""
