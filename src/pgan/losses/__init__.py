"""Batch-hard triplet, cross-entropy and their weighted sum."""
