"""Preparing conversations for the LLM: tokens, truncation, embeddings, duplicate clusters."""
