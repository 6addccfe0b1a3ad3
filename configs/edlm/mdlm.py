"""EDLM on Tiny Shakespeare characters: each stage of the pipeline is one run of this config.

    python -m common.main --config=configs/edlm/mdlm.py --workdir=/tmp/edlm/denoiser
    python -m common.main --config=configs/edlm/mdlm.py:ar --workdir=/tmp/edlm/ar_energy
    python -m common.main --config=configs/edlm/mdlm.py:nce --workdir=/tmp/edlm/nce_energy \
        --config.runs.denoiser=/tmp/edlm/denoiser
    python -m common.main --config=configs/edlm/mdlm.py:judge --workdir=/tmp/edlm/judge
    python -m common.main --config=configs/edlm/mdlm.py:sample --workdir=/tmp/edlm/eval \
        --config.runs.denoiser=/tmp/edlm/denoiser --config.runs.ar_energy=/tmp/edlm/ar_energy \
        --config.runs.nce_energy=/tmp/edlm/nce_energy --config.runs.judge=/tmp/edlm/judge

Arguments (comma-separated): '' (the MDLM denoiser), 'ar' (the EDLM-AR energy: a causal LM of
the denoiser's size), 'nce' (the NCE energy network, starting from the denoiser run named by
`runs.denoiser`, which stays frozen), 'judge' (the larger causal LM that scores samples),
'sample' (the evaluation: samples of every sampler and step count scored by the AR judge and
a 5-gram judge, the floors, the likelihood rows; from the four runs named in `runs`); 'smoke'
shrinks any of them. Every stage evaluates on validation windows every `train.eval_every` steps
(metrics.jsonl; the NCE stage logs its held-out accuracy there). Expected (default): the
denoiser's validation NELBO falls to about 3.3 bits/char and the NCE energy tells data from
denoiser samples about 80% of the time; the whole pipeline with 3 seeds and the claims is
`python -m papers.edlm.reproduce`.
"""

import ml_collections

ARGS = ('smoke', 'ar', 'nce', 'judge', 'sample')


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = set(filter(None, arg.split(',')))
  unknown = args - set(ARGS)
  if unknown:
    raise ValueError(f'unknown config argument(s) {sorted(unknown)}: use {", ".join(ARGS)}')
  kinds = [k for k in ('ar', 'nce', 'judge', 'sample') if k in args]
  if len(kinds) > 1:
    raise ValueError(f'config arguments {kinds} pick different models: give one')
  kind = kinds[0] if kinds else 'mdlm'
  smoke = 'smoke' in args
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.edlm.experiment'
  c.model_kind = {'judge': 'ar'}.get(kind, kind)
  c.seed = 0
  c.num_devices = -1
  c.data = dict(data_dir='', seq_len=32)
  c.model = dict(num_layers=2, d_model=64, num_heads=4, num_kv_heads=4, mlp_dim=256)
  c.diffusion = dict(eps=1e-3, sampling_eps=1e-3)
  # workdirs of the earlier runs this one starts from (their newest checkpoints)
  c.runs = dict(denoiser='', ar_energy='', nce_energy='', judge='')
  # the evaluation ('sample'): `samplers` run at every S of `steps`, `ablations` at every S of
  # `ablation_steps` (names: mdlm or {ar|nce}_k<K>[_nocarry][_plusE][_speed], see
  # papers/edlm/evaluation.py), num_samples per cell; importance sampling at the steps with
  # window[0] <= t <= window[1] (the paper's main setting: every step) or, for _speed
  # samplers, speed_window (the released config's default is_end 0.4, is_start 0.6); the
  # n-gram judge's order; validation batches for the likelihood rows and the draws of mu for
  # the NCE energy's log Z there
  c.sample = dict(samplers=('mdlm', 'ar_k4', 'nce_k4', 'ar_k2_speed'), steps=(4, 8, 16, 32),
                  ablations=('ar_k1', 'ar_k2', 'ar_k8', 'ar_k4_nocarry', 'ar_k4_plusE',
                             'nce_k4_plusE'),
                  ablation_steps=(16,), num_samples=512, window=(0.0, 1.0),
                  speed_window=(0.4, 0.6), ngram_order=5, likelihood_batches=8,
                  log_z_samples=16)
  # 24k denoiser steps: its validation NELBO flattens (the reproduction's convergence rule)
  c.train = dict(steps=24_000, batch_size=32, log_every=100, eval_every=2400, eval_batches=32,
                 checkpoint_every=4800, keep_checkpoints=1)
  c.optim = dict(name='adamw', lr=3e-3, schedule='cosine', warmup_steps=100, weight_decay=0.0,
                 grad_clip=1.0, final_lr_fraction=0.1)
  if kind == 'ar':
    c.train.update(steps=6000, eval_every=600, checkpoint_every=6000)
  elif kind == 'judge':
    c.model.update(num_layers=3, d_model=96, num_heads=4, num_kv_heads=4, mlp_dim=384)
    c.train.update(steps=1500, eval_every=150, checkpoint_every=1500)
  elif kind == 'nce':
    c.train.update(steps=1500, eval_every=150, checkpoint_every=1500)
    c.optim.update(lr=1e-3, warmup_steps=50)
  if smoke:
    c.data.seq_len = 16
    c.model.update(num_layers=1, d_model=32, num_heads=2, num_kv_heads=2, mlp_dim=64)
    c.sample.update(steps=(2, 4), ablation_steps=(4,), num_samples=8, likelihood_batches=2,
                    log_z_samples=4)
    c.train.update(steps=6 if kind == 'judge' else 4, batch_size=8, log_every=2, eval_every=2,
                   eval_batches=2, checkpoint_every=6 if kind == 'judge' else 4)
    c.optim.warmup_steps = 1
  return c
