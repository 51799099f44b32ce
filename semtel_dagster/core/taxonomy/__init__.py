"""Taxonomy discovery: from a sample of conversations to a draft classifier file and a report."""
