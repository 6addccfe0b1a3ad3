"""REDI at paper scale: a Qwen2.5-Math-1.5B-sized model, SFT (lr 5e-5) then REDI (alpha 0.8, 1e-6)
or a baseline at the paper's tuned setting.

Stage 1 (the default argument) and stage 2 (`:redi`, `:symmetric`, `:dpo`, `:simpo`,
`:continued_sft`) are separate runs; stage 2 starts from the SFT run's newest checkpoint:

    TRACES="--config.data.traces_jsonl=/data/openr1_math_traces.jsonl \
        --config.data.tokenizer=/ckpt/Qwen2.5-Math-1.5B"
    python -m common.main --config=configs/redi/paper_qwen_math_1p5b.py --workdir=/ckpt/sft \
        $TRACES --config.model.init_checkpoint=/ckpt/Qwen2.5-Math-1.5B
    python -m common.main --config=configs/redi/paper_qwen_math_1p5b.py:redi --workdir=/ckpt/redi \
        $TRACES --config.init_from=/ckpt/sft
    python -m common.main --config=configs/redi/paper_qwen_math_1p5b.py:dpo --workdir=/ckpt/dpo \
        $TRACES --config.init_from=/ckpt/sft
    python -m common.main --config=configs/redi/paper_qwen_math_1p5b.py:tiny --workdir=/tmp/redi_t

The paper's setting (Xu et al. 2025, "Harnessing Negative Signals: Reinforcement Distillation
from Teacher Data for LLM Reasoning"; official Tim-Siu/reinforcement-distillation, TRL recipes
`sft/sft_landmv_5ep/config.yaml` and `redi/redi_1_08_1e-6/config.yaml`): Qwen2.5-Math-1.5B
(28 layers, hidden 1536, 12 heads, 2 KV heads, MLP 8960, tied embeddings), bf16, gradient
checkpointing. Stage 1: SFT on 78k correct OpenR1-Math traces, lr 5e-5, linear schedule with 10%
warmup, weight decay 1e-4, 3 epochs, sequences up to 32,768 tokens, 8 x 2 per device x 8 GPUs =
128 per step. Stage 2: REDI on 53k (correct, incorrect) trace pairs, chosen weight 1.0, rejected
weight alpha = 0.8, lr 1e-6, linear with 10% warmup, one epoch, global batch 32 (1 x 4
accumulation x 8 GPUs), prompts up to 800 and pairs up to 19,800 tokens. The baselines at the
paper's tuned values (Appendix C.4, Table 2 of `full_paper.pdf` in the official repository):
`:dpo` beta 0.001 at lr 2e-7 (best of beta in {0.001, 0.01, 0.1} x lr grids), `:simpo` beta 2,
gamma 1 at lr 5e-7 (better than beta 10, gamma 5 at 3e-7), `:symmetric` (alpha 1) at lr 2e-7;
`:continued_sft` (alpha 0) at REDI's 1e-6. Headline (issue 13):
MATH-500 pass@1 REDI 81.7 vs DPO 81.3 / SimPO 81.1 from SFT 76.7; average 48.3 vs 47.2 / 47.2.
Hardware: 8 GPUs (the recipes' global batch 32 = 1 per device x 4 accumulation x 8).

Here: model size, stage learning rates, DPO / SimPO betas and margin, schedules, alpha, batch
sizes, gradient accumulation and step counts (one pass over 53k pairs, three over 78k traces) are
the paper's;
`eval.num_samples` and `eval.batch_size` are our choice.
Data and start (`papers/redi/experiment.py`, `papers/redi/traces.py`): with
`data.traces_jsonl` (one JSON object per line: "prompt", "chosen" = a correct trace, optional
"rejected" = an incorrect one) and `data.tokenizer`, every row's prompt + chosen + EOS
(`data.eos_token`, default '<|endoftext|>') is an SFT example cut at `data.max_len` tokens, the
rows with a rejected trace are the pairs (cut at `data.pair_max_len`), and the last
`data.num_test` rows are held out; no chat template, no prompt-length cap (the recipe's 800).
`model.init_checkpoint` (config.json + model.safetensors, e.g. the released Qwen2.5-Math-1.5B)
is where SFT starts (`common.hf.load_qwen2`; a checkpoint whose architecture differs from
`config.model` is refused with one line naming the setting). The evaluation on traces is the
held-out rows' per-token log-likelihood of chosen and rejected traces and the share of pairs
ranked right: pass@1 on MATH-500 needs a math answer verifier and long-generation decoding,
which are not here. Without these settings the experiment trains on its own verifiable
arithmetic task (36-character sequences; `data.num_train` problems sized like the paper's SFT
set) from a fresh initialisation and reports greedy pass@1. Both stages train through
`common.train.fit` (checkpoints, resume, SIGTERM, metrics every `train.log_every` steps,
evaluators every `train.eval_every`). Memory: bf16 activations (`model.dtype`), rematerialised
blocks (`model.remat`), micro-batches of 2 (SFT) or 1 (stage 2) sequences per device on 8
devices (`train.grad_accum_steps`), and `--config.mesh.fsdp=8` shards parameters and Adam's
moments over the devices. `:tiny` keeps every
setting but shrinks sizes to one step on a CPU (`tests/test_paper_configs.py`; on a trace jsonl,
a trained tokenizer and a random Qwen2 checkpoint in `tests/test_paper_text_data.py`).
"""

import ml_collections

from common.config import config_args

SFT_EXAMPLES, PAIRS = 78_000, 53_000
SFT_BATCH, PAIR_BATCH, SFT_EPOCHS = 128, 32, 3
# stage-2 arguments -> (preference.method, preference.alpha)
PREFERENCE = {'redi': ('redi', 0.8), 'symmetric': ('redi', 1.0), 'dpo': ('dpo', 0.8),
              'simpo': ('simpo', 0.8), 'continued_sft': ('sft', 0.8)}
# the paper's tuned stage-2 settings (Appendix C.4 and Table 2 of the paper's full_paper.pdf in
# Tim-Siu/reinforcement-distillation): DPO beta 0.001 at 2e-7, SimPO beta 2, gamma 1 at 5e-7,
# symmetric REDI at 2e-7, REDI alpha 0.8 at 1e-6; continued SFT (alpha 0) at REDI's rate
DPO_BETA, SIMPO_BETA, SIMPO_GAMMA = 0.001, 2.0, 1.0
STAGE2_LR = {'redi': 1e-6, 'symmetric': 2e-7, 'dpo': 2e-7, 'simpo': 5e-7, 'continued_sft': 1e-6}


def get_config(arg: str = '') -> ml_collections.ConfigDict:
  args = config_args(arg, ('sft', *PREFERENCE, 'tiny'))
  stage2 = [a for a in args if a in PREFERENCE]
  if len(stage2) + ('sft' in args) > 1:
    raise ValueError(f'config argument {arg!r} names more than one stage: pick one of sft, '
                     f'{", ".join(PREFERENCE)}')
  sft_steps = SFT_EPOCHS * SFT_EXAMPLES // SFT_BATCH
  pair_steps = PAIRS // PAIR_BATCH
  c = ml_collections.ConfigDict()
  c.experiment = 'papers.redi.experiment'
  c.seed = 42
  c.num_devices = -1
  c.mesh = dict(fsdp=1, fsdp_min_size=2 ** 16)
  c.stage = 'preference' if stage2 else 'sft'
  c.init_from = ''  # stage 2: the SFT run's workdir
  c.data = dict(task='arith', num_train=SFT_EXAMPLES, num_valid=512, num_test=500,
                samples_per_problem=4, error_rate=0.4, seed=0, traces_jsonl='', tokenizer='',
                eos_token='',
                max_len=32_768, pair_max_len=19_800)
  c.model = dict(num_layers=28, d_model=1536, num_heads=12, num_kv_heads=2, mlp_dim=8960,
                 rope_theta=10000.0, norm_eps=1e-6, tie_embeddings=True, dtype='bfloat16',
                 remat=True, init_checkpoint='')
  method, alpha = PREFERENCE[stage2[0]] if stage2 else ('redi', 0.8)
  c.preference = dict(method=method, alpha=alpha, neg_gamma=0.0, dpo_beta=DPO_BETA,
                      simpo_beta=SIMPO_BETA, simpo_gamma=SIMPO_GAMMA)
  lr = STAGE2_LR[stage2[0]] if stage2 else 5e-5
  steps, batch = (pair_steps, PAIR_BATCH) if stage2 else (sft_steps, SFT_BATCH)
  c.train = dict(steps=steps, batch_size=batch, grad_accum_steps=4 if stage2 else 8,
                 eval_every=200, log_every=10, checkpoint_every=200, keep_checkpoints=2)
  c.optim = dict(name='adamw', lr=lr, schedule='linear', warmup_steps=steps // 10,
                 weight_decay=1e-4, grad_clip=1.0, final_lr_fraction=0.0)
  c.eval = dict(batch_size=8, temperature=0.6, num_samples=4)
  if 'tiny' in args:
    c.num_devices = 1
    c.data.update(num_train=64, num_valid=8, num_test=8, max_len=64, pair_max_len=48)
    c.model.update(num_layers=1, d_model=16, num_heads=2, num_kv_heads=1, mlp_dim=32)
    c.train.update(steps=1, batch_size=8, grad_accum_steps=1, eval_every=0, log_every=1,
                   checkpoint_every=1)
    c.optim.warmup_steps = 0
    c.eval.update(batch_size=8, num_samples=1)
  return c
