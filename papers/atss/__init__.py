"""ATSS: Adaptive Training Sample Selection (Zhang et al., CVPR 2020)."""
