"""Sampling-Free detectors (Chen et al., IEEE TIP 2021)."""
