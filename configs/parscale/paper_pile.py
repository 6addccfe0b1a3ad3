"""ParScale at paper scale: a 36-layer Qwen2.5-style LM (the 1.6B point) with P = 8 streams.

    python -m common.main --config=configs/parscale/paper_pile.py --workdir=/ckpt/parscale_p8 \
        --config.data.text_files='/data/pile/*.jsonl' --config.data.tokenizer=/ckpt/qwen2.5
    python -m common.main --config=configs/parscale/paper_pile.py:p1 --workdir=/ckpt/parscale_p1 \
        --config.data.text_files='/data/pile/*.jsonl' --config.data.tokenizer=/ckpt/qwen2.5
    python -m common.main --config=configs/parscale/paper_pile.py:p8 --workdir=/ckpt/recycled_p8 \
        --config.data.text_files='/data/pile/*.jsonl' --config.data.tokenizer=/ckpt/qwen2.5 \
        --config.model.init_checkpoint=/ckpt/p1_hf --config.train.steps=STEPS
    python -m common.main --config=configs/parscale/paper_pile.py:2.8b,p4 --workdir=/ckpt/ps_p4 \
        --config.data.text_files='/data/pile/*.jsonl' --config.data.tokenizer=/ckpt/qwen2.5
    python -m common.main --config=configs/parscale/paper_pile.py:tiny --workdir=/tmp/ps_tiny

The paper's setting (Chen et al. 2025, "Parallel Scaling Law for Language Models"; official
QwenLM/ParScale): Qwen2.5 architecture, 36 layers, P in {1, 2, 4, 8} streams with m = 48 prefix
tokens per layer and weight smoothing eps = 0.1, pretrained from scratch on 42B tokens of the
Pile or Stack-V2-Python (1024 sequences x 2048 tokens x 20k steps = 42B). Six sizes, selected
by the config argument (`SIZES`, default 1.6b): 36 layers, 16 heads, 2 KV heads and (hidden,
intermediate) in {896/4864, 1024/5504, 1280/6912, 1536/8320, 2048/11008, 2560/13824}, the
architecture whose non-embedding parameter counts, prefixes and aggregator included, are
exactly the 24 N values of the official `parametric_fit.py` (0.536B-4.415B;
`tests/test_parscale_checkpoint.py` checks every one). Headline: P = 8 at 1.6B matches P = 1
at about 2.8B, i.e. P streams ~ multiplying parameters by k ln P + 1 with k = 0.39
(Stack-V2-Python) and 0.33 (Pile). Released checkpoints load with
`papers.parscale.hf.load_parscale` (the `qwen2_parscale` format). Two-stage recycling: 1T
tokens with P = 1, then 20B tokens (2%) with fresh prefixes and aggregator at P > 1 (the
ParScale-1.8B-P{1,2,4,8} checkpoints). Hardware: GPU pretraining (the
paper's cost analysis is for GPUs; we did not find the device count).

Here: the model, P, m, eps, sequence length, batch and token budget are the paper's; the
optimiser settings (AdamW 3e-4, betas 0.9/0.95, weight decay 0.1, 2000 warmup steps, cosine to
10%) and RoPE theta 1e6 (Qwen2.5's) are our choices where we did not find the paper's.
Memory: parameters and Adam moments sharded over `mesh.fsdp` devices, bf16 activations
(`model.dtype`) on fp32 master weights, each block rematerialised (`model.remat`), 16-way
gradient accumulation (64 x 2048 tokens per micro-batch). Data: with `data.text_files`
(comma-separated jsonl/parquet/arrow files, directories or globs, column `data.text_field`) and
`data.tokenizer` (a tokenizer.json or its directory), the experiment
(`papers/parscale/experiment.py`, through `common.lm.load_lm_corpus`) tokenizes every document,
appends EOS (`data.eos_token`, default '<|endoftext|>'), joins them into one stream and cuts
2048-token sequences; the last 10% of the stream is the validation set (ours). Tokenization runs
at start-up in one process, with no cache. Without these settings it trains on the character
corpus of the data directory. Recycling (the third command): `model.init_checkpoint` names a
Hugging Face Qwen2 directory (config.json + model.safetensors: a Qwen2-family model, or a P = 1
backbone written with `common.hf.save_qwen2`); the backbone starts from its parameters
(`common.hf.load_qwen2`), the P streams' prefixes and aggregator start fresh, and a checkpoint
whose architecture differs from `config.model` is refused with one line naming the setting.
`parscale.init_from` (a workdir of a P = 1 run of this config) does the same from that run's
newest checkpoint, `data.first_batch` continues its data stream, and
`parscale.freeze_backbone=True` trains only the prefixes and aggregator (PEFT).
The stage's token budget (2% of the first stage's) is `train.steps`, set on the command line.
`:tiny` keeps every setting but shrinks sizes to one step on a CPU
(`tests/test_paper_configs.py`; on tiny jsonl/parquet files, a trained tokenizer and a random
Qwen2 checkpoint in `tests/test_paper_text_data.py`).
"""

import ml_collections

TOKENS = 42_000_000_000
BATCH, SEQ_LEN = 1024, 2048
# the paper's six sizes (non-embedding N at P = 1): (d_model, mlp_dim) with 36 layers, 16 heads
SIZES = {'0.5b': (896, 4864), '0.7b': (1024, 5504), '1.1b': (1280, 6912),
         '1.6b': (1536, 8320), '2.8b': (2048, 11008), '4.4b': (2560, 13824)}
STREAMS = {'p1': 1, 'p2': 2, 'p4': 4, 'p8': 8}


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = set(filter(None, arg.split(',')))
  unknown = args - {'tiny', *STREAMS, *SIZES}
  if unknown or len(args & set(SIZES)) > 1 or len(args & set(STREAMS)) > 1:
    raise ValueError(f'config argument(s) {sorted(args)}: use tiny, at most one of '
                     f'{", ".join(STREAMS)} and at most one of {", ".join(SIZES)}')
  streams = [STREAMS[a] for a in args & set(STREAMS)]
  d_model, mlp_dim = SIZES[next(iter(args & set(SIZES)), '1.6b')]
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.parscale.experiment'
  c.seed = 0
  c.num_devices = -1
  c.mesh = dict(fsdp=8, fsdp_min_size=2 ** 16)
  c.data = dict(data_dir='', seq_len=SEQ_LEN, text_files='', text_field='text', tokenizer='',
               eos_token='', first_batch=0)
  c.model = dict(num_layers=36, d_model=d_model, num_heads=16, num_kv_heads=2, mlp_dim=mlp_dim,
                 rope_theta=1e6, norm_eps=1e-6, tie_embeddings=True, dtype='bfloat16',
                 remat=True, init_checkpoint='')
  c.parscale = dict(num_streams=streams[0] if streams else 8, num_prefix=48, eps=0.1,
                    prefix_init=0.02, init_from='', freeze_backbone=False, prefix_at_p1=False,
                    stream_init='normal', snippet_len=0, zero_aggregator_out=False)
  c.train = dict(steps=round(TOKENS / (BATCH * SEQ_LEN)), batch_size=BATCH, log_every=50,
                 eval_every=1000, eval_batches=32, checkpoint_every=1000, keep_checkpoints=2,
                 compute_dtype='float32', grad_accum_steps=16)
  c.optim = dict(name='adamw', lr=3e-4, b1=0.9, b2=0.95, schedule='cosine', warmup_steps=2000,
                 weight_decay=0.1, grad_clip=1.0, final_lr_fraction=0.1)
  if 'tiny' in args:
    c.num_devices = 1
    c.mesh.update(fsdp=1, fsdp_min_size=0)
    c.data.seq_len = 16
    c.model.update(num_layers=1, d_model=16, num_heads=2, num_kv_heads=1, mlp_dim=32)
    c.parscale.update(num_streams=2, num_prefix=4)
    c.train.update(steps=1, batch_size=8, log_every=1, eval_every=0, eval_batches=1,
                   checkpoint_every=1, grad_accum_steps=2)
    c.optim.warmup_steps = 0
  return c
