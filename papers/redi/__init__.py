"""REDI: reinforcement distillation from positive and negative teacher traces (Xu et al. 2025)."""
