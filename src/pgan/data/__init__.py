"""Datasets, the synthetic benchmark, the identity-balanced sampler and joint image+mask transforms."""
