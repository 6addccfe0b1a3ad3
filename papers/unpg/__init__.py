"""UNPG: Unified Negative Pair Generation (Jung et al., BMVC 2022), on Omniglot verification."""
