"""Tokenizers: word-level ones built from the data for tiny runs; HF tokenizers for full runs."""
