"""EDLM at paper scale: the MDLM denoiser (DiT-small size) on 1024-token sequences, then EDLM.

    python -m common.main --config=configs/edlm/paper_owt.py --workdir=/ckpt/edlm_mdlm \
        --config.data.text_files='/data/openwebtext/*.parquet' --config.data.tokenizer=/ckpt/gpt2
    python -m common.main --config=configs/edlm/paper_owt.py:ar --workdir=/ckpt/edlm_ar \
        --config.data.text_files='/data/openwebtext/*.parquet' --config.data.tokenizer=/ckpt/gpt2
    python -m common.main --config=configs/edlm/paper_owt.py:nce --workdir=/ckpt/edlm_nce \
        --config.data.text_files='/data/openwebtext/*.parquet' --config.data.tokenizer=/ckpt/gpt2 \
        --config.runs.denoiser=/ckpt/edlm_mdlm
    python -m common.main --config=configs/edlm/paper_owt.py:tiny --workdir=/tmp/edlm_tiny

The paper's setting (Xu et al., ICLR 2025, on MDLM's OpenWebText recipe; official config
MinkaiXu/Energy-Diffusion-LLM `configs/config.yaml`): DiT-small denoiser, 12 blocks, hidden 768,
12 heads, no time conditioning, GPT-2 tokenizer (vocab 50257), sequences of 1024 tokens, global
batch 512, AdamW lr 3e-4 (betas 0.9/0.999, no weight decay), 2500 warmup steps then constant,
gradient clip 1.0, bf16, 1M steps (512 x 1024 tokens each), EMA 0.9999. EDLM-AR uses an AR model of
the same size as the energy; EDLM-NCE fine-tunes an energy network initialised from the
denoiser. Sampling: importance sampling with k = 2 candidates (`is_size`) in the window of
timesteps t in [0.4, 0.6] (`is_start`/`is_end`), temperature 1. Headline (1024 sampling steps,
gen. PPL under GPT-2 large): MDLM 42.6 -> EDLM 25.5. Hardware: a multi-GPU node (the official
config runs Lightning DDP over all local GPUs in bf16).

Here: the denoiser is the shared Qwen2-style transformer (RMSNorm, SwiGLU, RoPE) rather than a
DiT with adaLN; no dropout and no EMA (the shared trainer has neither); `NCE_STEPS` is our
choice (the official config does not fix it); the NCE run starts from the denoiser run named
by `runs.denoiser` (its newest checkpoint), which stays frozen. Memory: parameters and Adam
moments sharded over `mesh.fsdp` devices, the loss on bf16 copies of fp32 master weights
(`train.compute_dtype`; the activations stay fp32 because the experiment passes no compute
dtype to its models), 8-way gradient accumulation (64 sequences of 1024 tokens per
micro-batch). Data: with
`data.text_files` (comma-separated jsonl/parquet/arrow files, directories or globs, column
`data.text_field`) and `data.tokenizer` (GPT-2's tokenizer.json or its directory), the experiment
(`papers/edlm/experiment.py`, through `common.lm.load_lm_corpus`) tokenizes every document,
appends EOS (`data.eos_token`, default '<|endoftext|>'), joins them into one stream and cuts
1024-token sequences; the last 10% of the stream is the validation set (ours, not the paper's
split). Tokenization runs at start-up in one process, with no cache. Without these settings the
experiment trains on the character corpus of the data directory. `:tiny` keeps every setting but
shrinks sizes to one step on a CPU (`tests/test_paper_configs.py`; on tiny jsonl/parquet files
and a trained tokenizer in `tests/test_paper_text_data.py`).
"""

import ml_collections

PAPER_STEPS = 1_000_000
NCE_STEPS = 100_000  # ours: the official config does not fix it


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = set(filter(None, arg.split(',')))
  unknown = args - {'tiny', 'ar', 'nce'}
  if unknown:
    raise ValueError(f'unknown config argument(s) {sorted(unknown)}: use tiny, ar, nce')
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.edlm.experiment'
  c.model_kind = 'ar' if 'ar' in args else 'nce' if 'nce' in args else 'mdlm'
  c.seed = 1
  c.num_devices = -1
  c.mesh = dict(fsdp=8, fsdp_min_size=2 ** 14)
  c.data = dict(data_dir='', seq_len=1024, text_files='', text_field='text', tokenizer='',
               eos_token='')
  c.model = dict(num_layers=12, d_model=768, num_heads=12, num_kv_heads=12, mlp_dim=3072)
  c.diffusion = dict(eps=1e-3, sampling_eps=1e-3)
  c.runs = dict(denoiser='', ar_energy='', nce_energy='', judge='')  # earlier runs' workdirs
  c.train = dict(steps=PAPER_STEPS, batch_size=512, log_every=100, eval_every=10_000,
                 eval_batches=16, checkpoint_every=10_000, keep_checkpoints=2,
                 compute_dtype='bfloat16', grad_accum_steps=8)
  c.optim = dict(name='adam', lr=3e-4, b1=0.9, b2=0.999, schedule='constant',
                 warmup_steps=2500, weight_decay=0.0, grad_clip=1.0, final_lr_fraction=1.0)
  if 'nce' in args:  # the energy network's run: NCE_STEPS from the denoiser's weights
    c.train.steps = NCE_STEPS
  if 'tiny' in args:
    c.num_devices = 1
    c.mesh.update(fsdp=1, fsdp_min_size=0)
    c.data.seq_len = 32
    c.model.update(num_layers=1, d_model=32, num_heads=2, num_kv_heads=2, mlp_dim=64)
    c.train.update(steps=1, batch_size=8, log_every=1, eval_every=0, eval_batches=1,
                   checkpoint_every=1, grad_accum_steps=2)
    c.optim.warmup_steps = 0
  return c
