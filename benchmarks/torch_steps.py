"""The same training steps written in plain PyTorch (CPU, float32), for the speed ratio.

Optional: `pip install torch==2.13.0` (the `bench` extra). Each `make_*` returns a function
running one full training step (forward, backward, optimizer update).
"""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
  def __init__(self, d: int, eps: float = 1e-6):
    super().__init__()
    self.scale, self.eps = nn.Parameter(torch.ones(d)), eps

  def forward(self, x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.scale


def rope(x, theta=10000.0):  # x [B, H, S, D], rotate-half convention
  s, d = x.shape[-2], x.shape[-1]
  freq = theta ** (-torch.arange(d // 2, dtype=torch.float32) / (d // 2))
  angle = torch.arange(s, dtype=torch.float32)[:, None] * freq
  cos, sin = angle.cos(), angle.sin()
  x1, x2 = x[..., : d // 2], x[..., d // 2:]
  return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


class Block(nn.Module):
  def __init__(self, d, heads, mlp):
    super().__init__()
    self.heads = heads
    self.q, self.k, self.v = (nn.Linear(d, d) for _ in range(3))
    self.o = nn.Linear(d, d, bias=False)
    self.gate, self.up = nn.Linear(d, mlp, bias=False), nn.Linear(d, mlp, bias=False)
    self.down = nn.Linear(mlp, d, bias=False)
    self.n1, self.n2 = RMSNorm(d), RMSNorm(d)

  def forward(self, x):
    b, s, d = x.shape
    h = self.n1(x)
    split = lambda t: t.view(b, s, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
    q, k, v = rope(split(self.q(h))), rope(split(self.k(h))), split(self.v(h))
    att = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
    x = x + self.o(att.transpose(1, 2).reshape(b, s, d))
    h = self.n2(x)
    return x + self.down(nn.functional.silu(self.gate(h)) * self.up(h))


class LM(nn.Module):
  def __init__(self, vocab, layers, d, heads, mlp):
    super().__init__()
    self.embed = nn.Embedding(vocab, d)
    self.blocks = nn.ModuleList(Block(d, heads, mlp) for _ in range(layers))
    self.norm = RMSNorm(d)

  def forward(self, tokens):
    x = self.embed(tokens)
    for block in self.blocks:
      x = block(x)
    return self.norm(x) @ self.embed.weight.T  # tied embeddings


def make_lm_step(vocab, layers, d, heads, mlp, batch, seq):
  model = LM(vocab, layers, d, heads, mlp)
  opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
  tokens = torch.randint(0, vocab, (batch, seq + 1))

  def step():
    logits = model(tokens[:, :-1])
    loss = nn.functional.cross_entropy(logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss.item()

  return step


def make_convnet_step(features, num_classes, batch, size, groups=8):
  layers, c = [], 1
  for i, f in enumerate(features):
    for j in range(2):
      stride = 2 if (j == 0 and i > 0) else 1
      layers += [nn.Conv2d(c, f, 3, stride, padding=1, bias=False),
                 nn.GroupNorm(min(groups, f), f), nn.ReLU()]
      c = f
  model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))
  opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                        weight_decay=5e-4)
  images = torch.randn(batch, 1, size, size)
  labels = torch.randint(0, num_classes, (batch,))

  def step():
    loss = nn.functional.cross_entropy(model(images), labels)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()

  return step


def set_threads(n: int) -> None:
  torch.set_num_threads(max(1, n))



