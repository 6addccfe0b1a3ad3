"""RS2: repeated random sampling for minimizing time-to-accuracy (Okanovic et al., ICLR 2024).

The sampler itself is shared (`common.data.subsets`); this folder holds the comparison with
data-pruning baselines on MNIST.
"""

from common.data.subsets import static_subset_indices, subset_round_indices

__all__ = ['subset_round_indices', 'static_subset_indices']
