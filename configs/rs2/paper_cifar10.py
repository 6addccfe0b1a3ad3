"""RS2 at paper scale: 200 rounds, a 10% budget per round, batch 128, SGD 0.1 -> 1e-4 cosine.

    python -m common.main --config=configs/rs2/paper_cifar10.py \
        --config.data.cifar10_dir=/data/cifar10 --workdir=/ckpt/rs2_r10
    python -m common.main --config=configs/rs2/paper_cifar10.py:r5 \
        --config.data.cifar10_dir=/data/cifar10 --workdir=/ckpt/rs2_r5
    python -m common.main --config=configs/rs2/paper_cifar10.py:static \
        --config.data.cifar10_dir=/data/cifar10 --workdir=/ckpt/static
    python -m common.main --config=configs/rs2/paper_cifar10.py:tiny --workdir=/tmp/rs2_tiny

`data.cifar10_dir` is the folder holding `cifar-10-batches-py/` (cifar-10-python.tar.gz
unpacked) or `cifar-10-batches-bin/` (the binary version).

The paper's setting (Okanovic et al., ICLR 2024, "Repeated Random Sampling for Minimizing the
Time-to-Accuracy of Learning"; official PatrikOkanovic/RS2 on DeepCore): ResNet-18 on
CIFAR-10 (50k training images), 200 rounds, per-round budgets r in {1%, 5%, 10%, 30%}, batch
128, SGD momentum 0.9 nesterov, weight decay 5e-4, lr 0.1 with a per-step cosine to 1e-4 over
steps-per-round x rounds, random-crop (padding 4) and horizontal-flip augmentation (DeepCore's
CIFAR transform). RS2 without replacement cuts one shuffled permutation into chunks of r*N and
reshuffles when it is used up. Headline: CIFAR-10 at r = 5%: RS2 about 87% vs 64% for a static
random subset; at r = 10% RS2 reaches the full-data accuracy target 4.3x sooner. Hardware: GPU
training (time-to-accuracy is wall-clock time on it).

Here: the sampler, budget, rounds, batch, optimiser, schedule, augmentation and data are the
paper's: the experiment (`papers/rs2/experiment.py`) reads CIFAR-10 (50k train / 10k test)
through `common.data.load_cifar10` when `data.cifar10_dir` is set. Deviations: the network is
this repo's GroupNorm conv classifier (a 2x2 mean-pool stem, then stages at ResNet-18's widths
64-512, `model.features`), not a ResNet-18; inputs are shifted by 0.5, not normalised by the
per-channel mean and std. Without `data.cifar10_dir` the experiment falls back to the MNIST file
of the data directory, which holds only 10k images (lower `data.num_train` / `data.num_test`
then). `:r1`, `:r5`, `:r30`, `:rs2_replacement`, `:static` and `:full` switch budget and
sampler. `:tiny` keeps every setting but shrinks sizes to one step on a CPU
(`tests/test_paper_configs.py`; on CIFAR-10 files in `tests/test_paper_data.py`).
"""

import ml_collections

SAMPLERS = {'rs2': 'without_replacement', 'rs2_replacement': 'with_replacement',
            'static': 'static', 'full': 'full'}  # argument -> data.sampler.mode
BUDGETS = {'r1': 0.01, 'r5': 0.05, 'r10': 0.1, 'r30': 0.3}


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = set(filter(None, arg.split(',')))
  unknown = args - set(SAMPLERS) - set(BUDGETS) - {'tiny'}
  if unknown:
    raise ValueError(f'unknown config argument(s) {sorted(unknown)}: use tiny, '
                     f'{", ".join(SAMPLERS)}, {", ".join(BUDGETS)}')
  mode = SAMPLERS[next((m for m in SAMPLERS if m in args), 'rs2')]
  fraction = next((BUDGETS[b] for b in BUDGETS if b in args), 0.1)
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.rs2.experiment'
  c.seed = 0
  c.num_devices = -1
  c.mesh = dict(fsdp=1, fsdp_min_size=2 ** 16)  # 11M parameters: data parallel is enough
  c.data = dict(data_dir='', cifar10_dir='', num_train=50_000, num_test=10_000, augment=True,
                sampler=dict(mode=mode, fraction=fraction))
  c.model = dict(features=(64, 128, 256, 512))
  c.train = dict(rounds=200, batch_size=128, eval_batch_size=400, log_every=50, eval_every=0,
                 checkpoint_every=1000, keep_checkpoints=2, compute_dtype='bfloat16')
  c.optim = dict(name='sgd', lr=0.1, momentum=0.9, nesterov=True, schedule='cosine',
                 warmup_steps=0, weight_decay=5e-4, grad_clip=0.0, final_lr_fraction=1e-3)
  if 'tiny' in args:
    c.num_devices = 1
    c.data.update(num_train=80, num_test=40)
    c.model.features = (8, 16)
    c.train.update(rounds=1, batch_size=8, eval_batch_size=20, log_every=1, checkpoint_every=1)
  return c
