"""ParScale: parallel scaling of a language model (Chen et al. 2025)."""
