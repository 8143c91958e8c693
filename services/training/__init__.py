"""Training: source bundles and built-in architectures to checkpoints, with provenance and logs."""
