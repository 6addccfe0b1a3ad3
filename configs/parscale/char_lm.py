"""ParScale character LM: P parallel streams of one shared backbone (Tiny Shakespeare).

    python -m common.main --config=configs/parscale/char_lm.py --workdir=/tmp/ps_base \
        --config.parscale.num_streams=1
    python -m common.main --config=configs/parscale/char_lm.py:frozen --workdir=/tmp/ps_p8 \
        --config.parscale.init_from=/tmp/ps_base --config.parscale.num_streams=8
    python -m common.main --config=configs/parscale/char_lm.py --workdir=/tmp/ps_p4_scratch
    python -m common.main --config=configs/parscale/char_lm.py:smoke --workdir=/tmp/ps_smoke

The base LM (first command): 2 layers, d = 64, 2 heads of 32 dimensions, SwiGLU 256, trained
from scratch on 64-character windows. `:frozen` is the paper's frozen-backbone (PEFT) stage on
top of it (600 steps, lr 1e-2): the backbone of the base run's newest checkpoint stays fixed,
the data stream continues past the base run's batches, and only the P streams' m = 8 prefix
slots per layer and the aggregator train; each stream's prefixes start as the base model's own
keys and values on a training snippet of its own (`parscale.stream_init='snippets'`), the
aggregator's last layer at 0 (equal weights). `--config.parscale.prefix_at_p1=True` with
P = 1 is the prefix-tuning control. The third command is P = 4 from scratch (normal(0.02)
prefixes). The full design (P in {1, 2, 4, 8}, controls, seeds, claims) is
`python -m papers.parscale.reproduce`; `:smoke` shrinks everything to seconds
(combine as `:smoke,frozen`).

Expected: the base LM ends near 1.6 nats/char (the bigram floor of the validation text is
2.45); the frozen stage's P = 8 ends near the base LM's loss.
"""

import ml_collections

BASE_STEPS = 2400
FROZEN_STEPS = 600


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = set(filter(None, arg.split(',')))
  if args - {'smoke', 'frozen'}:
    raise ValueError(f'unknown config argument(s) {sorted(args)}: use "", smoke, frozen')
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.parscale.experiment'
  c.seed = 0
  c.num_devices = -1  # all local devices
  # first_batch: index of this run's first batch in the seed's shuffled window order
  c.data = dict(data_dir='', seq_len=64, first_batch=0)
  c.model = dict(num_layers=2, d_model=64, num_heads=2, num_kv_heads=2, mlp_dim=256)
  # eps: weight smoothing (0.1 in the paper's training runs); num_prefix: m = 8 slots per
  # layer (the paper's 48 is 2% of its 2048-token window; 8 is 12% of these 64 characters).
  # init_from: workdir of a run whose newest checkpoint gives the backbone (second stage).
  # stream_init: 'normal' (normal(prefix_init)) or 'snippets' (the backbone's own keys and
  # values on snippet_len-character training snippets; 0 = m); prefix_at_p1: P = 1 with prefixes.
  c.parscale = dict(num_streams=4, num_prefix=8, eps=0.1, prefix_init=0.02, init_from='',
                    freeze_backbone=False, prefix_at_p1=False, stream_init='normal',
                    snippet_len=0, zero_aggregator_out=False)
  # eval: the first eval_batches x batch_size validation windows (512 x 64 characters)
  c.train = dict(steps=BASE_STEPS, batch_size=32, log_every=80, eval_every=240,
                 eval_batches=16, checkpoint_every=BASE_STEPS, keep_checkpoints=1,
                 steps_per_dispatch=1)
  c.optim = dict(name='adamw', lr=3e-3, schedule='cosine', warmup_steps=100, weight_decay=0.0,
                 grad_clip=1.0, final_lr_fraction=0.1)
  if 'frozen' in args:
    c.data.first_batch = BASE_STEPS
    c.parscale.update(freeze_backbone=True, stream_init='snippets', zero_aggregator_out=True)
    c.train.update(steps=FROZEN_STEPS, log_every=60, eval_every=60,
                   checkpoint_every=FROZEN_STEPS)
    c.optim.update(lr=1e-2, warmup_steps=30)
  if 'smoke' in args:
    c.data.seq_len = 16
    c.model.update(d_model=16, num_heads=2, num_kv_heads=2, mlp_dim=32)
    c.parscale.update(num_streams=2, num_prefix=2)
    c.data.first_batch = 4 if 'frozen' in args else 0
    c.train.update(steps=4, batch_size=8, log_every=2, eval_every=2, eval_batches=2,
                   checkpoint_every=4)
    c.optim.warmup_steps = 1
  return c
