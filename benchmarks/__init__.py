"""Speed benchmarks: scripts that print ratios and write JSON, never timed tests."""
