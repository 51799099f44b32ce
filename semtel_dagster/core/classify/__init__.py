"""Classifiers: the prompt library, request plans, answering rounds, reuse, parsing and cleaning."""
