"""Dataset readers, the deterministic batch stream, and the download helper."""

from common.data.cifar10 import load_cifar10, read_cifar10_binary, read_cifar10_python
from common.data.files import (
                               CocoDetection,
                               ImageFolder,
                               eos_id,
                               join_documents,
                               load_image_folder,
                               pack_documents,
                               read_table,
                               read_texts,
                               token_stream,
                               token_windows,
)
from common.data.pipeline import batch_indices, take
from common.data.sources import (
                               DataError,
                               data_dir,
                               load_char_corpus,
                               load_mnist,
                               load_omniglot,
                               read_idx,
                               stand_in_notice,
)
from common.data.subsets import (
                               SubsetBatchStream,
                               batch_sampler,
                               static_subset_indices,
                               subset_round_indices,
)

__all__ = ['DataError', 'batch_indices', 'data_dir', 'load_char_corpus', 'load_mnist',
           'load_omniglot', 'read_idx', 'stand_in_notice', 'take']
__all__ += ['CocoDetection', 'ImageFolder', 'eos_id', 'join_documents', 'load_image_folder',
            'pack_documents', 'read_table', 'read_texts', 'token_stream', 'token_windows']
__all__ += ['SubsetBatchStream', 'batch_sampler', 'static_subset_indices',
            'subset_round_indices']
__all__ += ['load_cifar10', 'read_cifar10_binary', 'read_cifar10_python']
