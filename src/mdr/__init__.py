"""Multilingual dense retrieval training: X-X / X-Y / hybrid batch sampling for a shared encoder."""
