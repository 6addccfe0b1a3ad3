"""PROPS: Proximal Robust On-Policy Sampling (Corrado & Hanna)."""
