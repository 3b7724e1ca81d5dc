"""The simulator: the synthetic scene and sequence, and simulated EuRoC flights (harness, never imported by the product)."""
