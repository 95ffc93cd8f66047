"""Training loop, checkpoints, feature extraction and the config -> objects builder."""
