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
'sample' (the evaluation: samples of every method and step count scored by the judge, the
floors, the likelihood rows; from the four runs named in `runs`); 'smoke' shrinks any of them.
Every stage evaluates on validation windows every `train.eval_every` steps (metrics.jsonl).
Expected (default): the denoiser's validation NELBO falls to about 3.5 bits/char; the whole
pipeline with 3 seeds and the claims is `python -m papers.edlm.reproduce`.
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
  # the evaluation ('sample'): samplers (also 'edlm_ar_plusE', 'edlm_nce_plusE': the released
  # code's softmax(+E) weights), step counts S, samples per (method, S), k candidates, the
  # share of steps (nearest t = 1) with importance sampling; validation batches for the
  # likelihood rows and the importance samples of the NCE energy's log Z there
  c.sample = dict(methods=('mdlm', 'edlm_ar', 'edlm_nce'), steps=(4, 8, 16, 32),
                  num_samples=128, candidates=4, window=0.25, likelihood_batches=8,
                  log_z_samples=8)
  c.train = dict(steps=2500, batch_size=32, log_every=50, eval_every=250, eval_batches=8,
                 checkpoint_every=2500, keep_checkpoints=1)
  c.optim = dict(name='adamw', lr=3e-3, schedule='cosine', warmup_steps=100, weight_decay=0.0,
                 grad_clip=1.0, final_lr_fraction=0.1)
  if kind == 'ar':
    c.train.update(steps=1500, eval_every=150, checkpoint_every=1500)
  elif kind == 'judge':
    c.model.update(num_layers=3, d_model=96, num_heads=4, num_kv_heads=4, mlp_dim=384)
    c.train.update(steps=1200, eval_every=150, checkpoint_every=1200)
  elif kind == 'nce':
    c.train.update(steps=100, eval_every=20, checkpoint_every=100)
    c.optim.update(lr=3e-4, warmup_steps=20)
  if smoke:
    c.data.seq_len = 16
    c.model.update(num_layers=1, d_model=32, num_heads=2, num_kv_heads=2, mlp_dim=64)
    c.sample.update(steps=(2, 4), num_samples=8, likelihood_batches=2, log_z_samples=4)
    c.train.update(steps=6 if kind == 'judge' else 4, batch_size=8, log_every=2, eval_every=2,
                   eval_batches=2, checkpoint_every=6 if kind == 'judge' else 4)
    c.optim.warmup_steps = 1
  return c
