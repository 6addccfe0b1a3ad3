"""EDLM on Tiny Shakespeare characters: the MDLM denoiser, an AR model, or the NCE energy.

    python -m common.main --config=configs/edlm/mdlm.py --workdir=/tmp/edlm_mdlm
    python -m common.main --config=configs/edlm/mdlm.py:smoke --workdir=/tmp/edlm_smoke
    python -m common.main --config=configs/edlm/mdlm.py:nce --workdir=/tmp/edlm_nce
    python -m common.main --config=configs/edlm/mdlm.py:ar --workdir=/tmp/edlm_ar

Arguments (comma-separated): '' / 'ar' / 'nce' picks the model, 'smoke' shrinks the run.
Expected (default): validation NELBO falls from ~6 bits/char to about 3.7 bits/char in
2000 steps (an AR model of the same size reaches about 2.3 in 600 steps); the full
comparison, with sampling, is `python -m papers.edlm.reproduce`.
"""

import ml_collections


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = set(filter(None, arg.split(',')))
  unknown = args - {'smoke', 'ar', 'nce'}
  if unknown:
    raise ValueError(f'unknown config argument(s) {sorted(unknown)}: use smoke, ar, nce')
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.edlm.experiment'
  c.model_kind = 'ar' if 'ar' in args else 'nce' if 'nce' in args else 'mdlm'
  c.seed = 0
  c.num_devices = -1
  c.data = dict(data_dir='', seq_len=64)
  c.model = dict(num_layers=3, d_model=96, num_heads=4, num_kv_heads=4, mlp_dim=384)
  c.diffusion = dict(eps=1e-3, sampling_eps=1e-3)
  c.nce = dict(steps=150, lr=3e-4, warmup_steps=20)  # the energy network's run ('nce')
  c.train = dict(steps=2000, batch_size=32, log_every=50, eval_every=500, eval_batches=8,
                 checkpoint_every=500, keep_checkpoints=1)
  c.optim = dict(name='adamw', lr=3e-3, schedule='cosine', warmup_steps=100, weight_decay=0.0,
                 grad_clip=1.0, final_lr_fraction=0.1)
  if 'smoke' in args:
    c.data.seq_len = 32
    c.model.update(num_layers=1, d_model=32, num_heads=2, num_kv_heads=2, mlp_dim=64)
    c.nce.steps = 4
    c.train.update(steps=4, batch_size=8, log_every=2, eval_every=0, eval_batches=2,
                   checkpoint_every=4)
  return c
