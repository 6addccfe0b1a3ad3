"""The same training steps written in plain PyTorch (CPU, float32), for the speed ratio.

Optional: `pip install torch==2.13.0` (the `bench` extra). Each `make_*` returns a function
running one full training step (forward, backward, optimizer update) on the batch the JAX step
sees (numpy arrays from the paper's loader, converted once). Layouts follow the JAX models
(`common.models`, `common.detection.model`) so the FLOPs match; initialisations do not need to.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

F = nn.functional


def _t(x) -> torch.Tensor:
  return torch.from_numpy(np.ascontiguousarray(x))


def _adamw(params, optim: dict):
  return torch.optim.AdamW(params, lr=optim['lr'], betas=(optim.get('b1', 0.9),
                                                          optim.get('b2', 0.999)),
                           weight_decay=optim.get('weight_decay', 0.0))


def _sgd(params, optim: dict):
  return torch.optim.SGD(params, lr=optim['lr'], momentum=optim.get('momentum', 0.9),
                         nesterov=optim.get('nesterov', False),
                         weight_decay=optim.get('weight_decay', 0.0))


def _optimizer(params, optim: dict):
  return (_adamw if optim['name'] in ('adamw', 'adam') else _sgd)(list(params), optim)


def _train_step(model: nn.Module, optim: dict, loss_fn):
  """A closure running loss_fn() -> backward -> (clip) -> optimizer step."""
  opt = _optimizer(model.parameters(), optim)
  clip = optim.get('grad_clip', 0.0)

  def step():
    loss = loss_fn()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
      torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return loss.item()

  return step


# --- the shared transformer -------------------------------------------------------------------

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

  def forward(self, x, causal=True, prefix=None, mask=None):
    b, s, d = x.shape
    h = self.n1(x)
    split = lambda t: t.view(b, s, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
    q, k, v = rope(split(self.q(h))), rope(split(self.k(h))), split(self.v(h))
    if prefix is not None:  # ParScale: per-stream key/value slots without RoPE
      k, v = torch.cat([prefix[0], k], 2), torch.cat([prefix[1], v], 2)
    att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                         is_causal=causal and mask is None)
    x = x + self.o(att.transpose(1, 2).reshape(b, s, d))
    h = self.n2(x)
    return x + self.down(F.silu(self.gate(h)) * self.up(h))


class LM(nn.Module):
  """Qwen2-style transformer (RMSNorm, RoPE, biased q/k/v, SwiGLU, tied embeddings)."""

  def __init__(self, vocab, layers, d, heads, mlp, causal=True):
    super().__init__()
    self.causal = causal
    self.embed = nn.Embedding(vocab, d)
    self.blocks = nn.ModuleList(Block(d, heads, mlp) for _ in range(layers))
    self.norm = RMSNorm(d)

  def forward(self, tokens, prefixes=None, return_hidden=False):
    x = self.embed(tokens)
    mask = None
    if prefixes is not None:  # prefix slots always visible, then causal over the tokens
      s, m = tokens.shape[1], prefixes[0][0].shape[2]
      mask = torch.cat([torch.ones(s, m, dtype=torch.bool),
                        torch.ones(s, s, dtype=torch.bool).tril()], 1)
    for i, block in enumerate(self.blocks):
      x = block(x, self.causal, None if prefixes is None else prefixes[i], mask)
    x = self.norm(x)
    return x if return_hidden else x @ self.embed.weight.T  # tied embeddings


def make_lm_step(vocab, layers, d, heads, mlp, batch, seq):
  model = LM(vocab, layers, d, heads, mlp)
  tokens = torch.randint(0, vocab, (batch, seq + 1))

  def loss():
    logits = model(tokens[:, :-1])
    return F.cross_entropy(logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1))

  return _train_step(model, dict(name='adamw', lr=1e-3, weight_decay=0.01, grad_clip=1.0), loss)


class ParScaleLM(nn.Module):
  """P streams of one backbone: per-layer prefix k/v [P, heads, m, head_dim], the dynamic
  aggregation MLP over the interleaved streams, weights smoothed by eps (papers/parscale)."""

  def __init__(self, vocab, layers, d, heads, mlp, streams, num_prefix, eps):
    super().__init__()
    self.p, self.eps, self.heads = streams, eps, heads
    self.backbone = LM(vocab, layers, d, heads, mlp)
    shape = (streams, heads, num_prefix, d // heads)
    self.prefix_k = nn.ParameterList(nn.Parameter(torch.randn(shape) * 0.02)
                                     for _ in range(layers))
    self.prefix_v = nn.ParameterList(nn.Parameter(torch.randn(shape) * 0.02)
                                     for _ in range(layers))
    self.w1, self.w2 = nn.Linear(streams * d, d), nn.Linear(d, streams)

  def forward(self, tokens):
    p, b = self.p, tokens.shape[0]
    prefixes = [(k.repeat_interleave(b, 0), v.repeat_interleave(b, 0))  # stream-major rows
                for k, v in zip(self.prefix_k, self.prefix_v, strict=True)]
    hidden = self.backbone(tokens.repeat(p, 1), prefixes, return_hidden=True)
    hidden = hidden.view(p, b, *hidden.shape[1:])  # [P, B, S, H]
    c = hidden.permute(1, 2, 3, 0).reshape(b, hidden.shape[2], -1)  # feature h * P + p
    w = torch.softmax(self.w2(F.silu(self.w1(c))), -1) * (1 - self.eps) + self.eps / p
    mixed = torch.einsum('bsp,pbsh->bsh', w, hidden)
    return mixed @ self.backbone.embed.weight.T


def make_parscale_step(vocab, layers, d, heads, mlp, streams, num_prefix, eps, optim, batch):
  """ParScale's P-stream LM, next-token cross-entropy."""
  model = ParScaleLM(vocab, layers, d, heads, mlp, streams, num_prefix, eps)
  tokens = _t(batch['tokens']).long()

  def loss():
    logits = model(tokens[:, :-1])
    return F.cross_entropy(logits.reshape(-1, vocab), tokens[:, 1:].reshape(-1))

  return _train_step(model, optim, loss)


def make_mdlm_step(vocab, layers, d, heads, mlp, eps, sampling_eps, optim, batch):
  """MDLM's continuous-time NELBO (papers/edlm/diffusion.py): antithetic t, absorbing [MASK]
  (id = vocab), SUBS log-probs on the bidirectional transformer over vocab + 1 tokens."""
  model = LM(vocab + 1, layers, d, heads, mlp, causal=False)
  x0 = _t(batch['tokens'][:, :-1]).long()
  mask_id = vocab

  def loss():
    b = x0.shape[0]
    t = (torch.rand(b) / b + torch.arange(b) / b) % 1.0
    t = (1 - sampling_eps) * t + sampling_eps
    move = torch.rand(x0.shape) < ((1 - eps) * t)[:, None]
    xt = torch.where(move, mask_id, x0)
    logits = model(xt)
    logits = logits + F.one_hot(torch.tensor(mask_id), vocab + 1) * -1e6
    log_probs = torch.log_softmax(logits, -1)
    carry = torch.where(F.one_hot(xt, vocab + 1) > 0, 0.0, -1e6)
    log_probs = torch.where((xt == mask_id)[..., None], log_probs, carry)
    nll = -log_probs.gather(-1, x0[..., None])[..., 0]
    nll = torch.where(xt == mask_id, nll, 0.0)
    sigma = -torch.log1p(-(1 - eps) * t)
    weight = (1 - eps) / (1 - (1 - eps) * t) / torch.expm1(sigma)
    return (nll * weight[:, None]).mean()

  return _train_step(model, optim, loss)


def make_redi_step(vocab, layers, d, heads, mlp, alpha, optim, batch):
  """REDI stage 2 (papers/redi/losses.py): one forward pass over chosen and rejected traces,
  -S(y+)/|y+| + alpha S(y-)/|y-| per pair, mean."""
  model = LM(vocab, layers, d, heads, mlp)
  tokens = torch.cat([_t(batch['pos_tokens']), _t(batch['neg_tokens'])]).long()
  mask = torch.cat([_t(batch['pos_mask']), _t(batch['neg_mask'])]).float()[:, 1:]
  b = len(batch['pos_tokens'])

  def loss():
    logp = torch.log_softmax(model(tokens)[:, :-1], -1)
    s = (logp.gather(-1, tokens[:, 1:, None])[..., 0] * mask).sum(-1)
    mean_logp = s / mask.sum(-1)
    return (-mean_logp[:b] + alpha * mean_logp[b:]).mean()

  return _train_step(model, optim, loss)


# --- conv nets ------------------------------------------------------------------------------

def conv_stages(features, groups, in_ch=1):
  """`common.models.convnet.ConvNet`: (conv3x3 -> GroupNorm -> ReLU) x 2 per stage."""
  stages, c = [], in_ch
  for i, f in enumerate(features):
    layers = []
    for j in range(2):
      stride = 2 if (j == 0 and i > 0) else 1
      layers += [nn.Conv2d(c, f, 3, stride, padding=1, bias=False), nn.GroupNorm(min(groups, f), f),
                 nn.ReLU()]
      c = f
    stages.append(nn.Sequential(*layers))
  return nn.Sequential(*stages)


def make_convnet_step(features, num_classes, batch, size, groups=8):
  model = nn.Sequential(conv_stages(features, groups), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(features[-1], num_classes))
  images = torch.randn(batch, 1, size, size)
  labels = torch.randint(0, num_classes, (batch,))
  optim = dict(name='sgd', lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
  return _train_step(model, optim, lambda: F.cross_entropy(model(images), labels))


def make_rs2_step(features, groups, num_classes, optim, batch):
  """RS2's classifier (papers/rs2/experiment.Classifier): 2x2 mean-pool stem, ConvNet, linear
  head, cross-entropy. (The subset sampling is the loader's job, not the step's.)"""
  model = nn.Sequential(nn.AvgPool2d(2), conv_stages(features, groups), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(features[-1], num_classes))
  images = _t(batch['image']).permute(0, 3, 1, 2).contiguous() - 0.5
  labels = _t(batch['label']).long()
  return _train_step(model, optim, lambda: F.cross_entropy(model(images), labels))


def _normalize(x):
  return x * torch.rsqrt(torch.clamp((x * x).sum(-1, keepdim=True), min=1e-24))


def make_unpg_step(features, embedding_dim, num_classes, image_size, loss_cfg, optim, batch):
  """UNPG on the Omniglot embedder (papers/unpg): ConvNet last-stage map flattened -> linear
  embedding; ArcFace / CosFace logits plus the whisker-filtered mini-batch negative pairs in
  every row's softmax denominator (masked logsumexp)."""
  side = image_size // 2 ** (len(features) - 1)
  embedder = nn.Sequential(conv_stages(features, 8), nn.Flatten(),
                           nn.Linear(features[-1] * side * side, embedding_dim))
  model = nn.Module()
  model.embedder = embedder
  model.class_weights = nn.Parameter(torch.randn(num_classes, embedding_dim) * 0.1)
  images = _t(batch['image']).permute(0, 3, 1, 2).contiguous() - 0.5
  labels = _t(batch['label']).long()
  s, m, wisk = loss_cfg['scale'], loss_cfg['margin'], loss_cfg['wisk']
  n = len(labels)
  iu, ju = torch.triu_indices(n, n, 1)
  target = F.one_hot(labels, num_classes).bool()

  def loss():
    x = _normalize(embedder(images))
    cos = x @ _normalize(model.class_weights).T
    if loss_cfg['head'] == 'arcface':
      with_margin = torch.cos(torch.acos(cos.clamp(-1 + 1e-7, 1 - 1e-7)) + m)
    else:
      with_margin = cos - m
    logits = torch.where(target, with_margin, cos)
    if loss_cfg['unpg']:
      sims = (x @ x.T)[iu, ju]
      keep = labels[iu] != labels[ju]
      if not math.isinf(wisk):
        with torch.no_grad():
          ordered = torch.sort(torch.where(keep, sims, torch.inf)).values
          count = keep.sum()
          last = torch.clamp(count - 1, min=0)
          q1 = ordered[torch.minimum(count // 4, last)]
          q3 = ordered[torch.minimum((3 * count) // 4, last)]
          low, high = q1 - wisk * (q3 - q1), q3 + wisk * (q3 - q1)
        keep = keep & (sims >= low) & (sims <= high)
      pairs = torch.where(keep, sims * s, -torch.inf).expand(n, -1)
      logits = torch.cat([logits * s, pairs], 1)
    else:
      logits = logits * s
    return (torch.logsumexp(logits, -1) - logits.gather(1, labels[:, None])[:, 0]).mean()

  return _train_step(model, optim, loss)


# --- the dense detector ---------------------------------------------------------------------

def _conv_gn(c_in, c_out, stride, groups=8):
  return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=False),
                       nn.GroupNorm(min(groups, c_out), c_out), nn.ReLU())


class Detector(nn.Module):
  """`common.detection.model.DenseDetector` with as many pyramid levels as backbone stages:
  stride-2 stem, stages of (stride-2 conv, conv), FPN (1x1 laterals, nearest top-down, 3x3
  outputs), shared class / box towers (conv-GN-ReLU), per-level box scale, centerness."""

  def __init__(self, num_classes, num_anchors, backbone_features, fpn, num_convs, prior_bias,
               centerness, in_ch=1, stem=16, groups=8):
    super().__init__()
    self.c, self.a = num_classes, num_anchors
    self.stem = _conv_gn(in_ch, stem, 2, groups)
    chans, stages = [stem] + list(backbone_features), []
    for i, f in enumerate(backbone_features):
      stages.append(nn.Sequential(_conv_gn(chans[i], f, 2, groups), _conv_gn(f, f, 1, groups)))
    self.stages = nn.ModuleList(stages)
    self.lateral = nn.ModuleList(nn.Conv2d(f, fpn, 1) for f in backbone_features)
    self.output = nn.ModuleList(nn.Conv2d(fpn, fpn, 3, padding=1) for _ in backbone_features)
    tower = lambda: nn.Sequential(*[m for _ in range(num_convs)  # noqa: E731
                                    for m in (nn.Conv2d(fpn, fpn, 3, padding=1),
                                              nn.GroupNorm(min(groups, fpn), fpn), nn.ReLU())])
    self.cls_tower, self.box_tower = tower(), tower()
    self.cls_out = nn.Conv2d(fpn, num_anchors * num_classes, 3, padding=1)
    nn.init.constant_(self.cls_out.bias, prior_bias)
    self.box_out = nn.Conv2d(fpn, num_anchors * 4, 3, padding=1)
    self.ctr_out = nn.Conv2d(fpn, num_anchors, 3, padding=1) if centerness else None
    self.scales = nn.Parameter(torch.ones(len(backbone_features)))

  def forward(self, images):
    x, feats = self.stem(images), []
    for stage in self.stages:
      x = stage(x)
      feats.append(x)
    lat = [conv(f) for conv, f in zip(self.lateral, feats, strict=True)]
    for i in range(len(lat) - 2, -1, -1):
      lat[i] = lat[i] + F.interpolate(lat[i + 1], size=lat[i].shape[-2:], mode='nearest')
    outs = [conv(p) for conv, p in zip(self.output, lat, strict=True)]
    cls, box, ctr = [], [], []
    b = images.shape[0]
    flat = lambda t, k: t.permute(0, 2, 3, 1).reshape(b, -1, k)  # noqa: E731  (NHWC order)
    for level, f in enumerate(outs):
      x, y = self.cls_tower(f), self.box_tower(f)
      cls.append(flat(self.cls_out(x), self.c))
      box.append(flat(self.box_out(y) * self.scales[level], 4))
      if self.ctr_out is not None:
        ctr.append(flat(self.ctr_out(y), 1)[..., 0])
    return torch.cat(cls, 1), torch.cat(box, 1), torch.cat(ctr, 1) if ctr else None


def _whc(boxes):
  w = boxes[..., 2] - boxes[..., 0] + 1.0
  h = boxes[..., 3] - boxes[..., 1] + 1.0
  return w, h, boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h


def box_encode(gt, anchors, weights=(10.0, 10.0, 5.0, 5.0)):
  aw, ah, ax, ay = _whc(anchors)
  gw, gh, gx, gy = _whc(gt)
  return torch.stack([weights[0] * (gx - ax) / aw, weights[1] * (gy - ay) / ah,
                      weights[2] * torch.log(gw / aw), weights[3] * torch.log(gh / ah)], -1)


def box_decode(deltas, anchors, weights=(10.0, 10.0, 5.0, 5.0)):
  aw, ah, ax, ay = _whc(anchors)
  clip = math.log(1000.0 / 16)
  dw = torch.clamp(deltas[..., 2] / weights[2], max=clip)
  dh = torch.clamp(deltas[..., 3] / weights[3], max=clip)
  cx, cy = deltas[..., 0] / weights[0] * aw + ax, deltas[..., 1] / weights[1] * ah + ay
  w, h = torch.exp(dw) * aw, torch.exp(dh) * ah
  return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w - 1, cy + 0.5 * h - 1], -1)


def box_iou(a, b):
  """[B, N, G] IoU (+1 convention) of anchors a [N, 4] and gts b [B, G, 4]."""
  lt = torch.maximum(a[None, :, None, :2], b[:, None, :, :2])
  rb = torch.minimum(a[None, :, None, 2:], b[:, None, :, 2:])
  wh = (rb - lt + 1).clamp(min=0)
  inter = wh[..., 0] * wh[..., 1]
  area = lambda x: (x[..., 2] - x[..., 0] + 1) * (x[..., 3] - x[..., 1] + 1)  # noqa: E731
  return inter / (area(a)[None, :, None] + area(b)[:, None, :] - inter).clamp(min=1e-6)


def _centers(boxes):
  return torch.stack([(boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2],
                     -1)


def atss_assign(anchors, num_per_level, gt, gt_labels, gt_mask, topk=9):
  """ATSS (Alg. 1), batched over images: per level the topk anchors nearest each gt centre,
  IoU threshold mean + std of the candidates, centre inside the gt -> (assigned_gt, labels)."""
  ious = box_iou(anchors, gt)  # [B, N, G]
  a_c, g_c = _centers(anchors), _centers(gt)
  dist = ((a_c[None, :, None] - g_c[:, None]) ** 2).sum(-1).sqrt()
  cand = torch.zeros_like(ious, dtype=torch.bool)
  start = 0
  for n in num_per_level:
    idx = dist[:, start:start + n].topk(min(topk, n), dim=1, largest=False).indices
    cand[:, start:start + n].scatter_(1, idx, True)
    start += n
  num = cand.sum(1)
  mean = torch.where(cand, ious, 0.0).sum(1) / num
  var = torch.where(cand, (ious - mean[:, None]) ** 2, 0.0).sum(1) / (num - 1).clamp(min=1)
  thr = mean + var.sqrt()
  x, y = a_c[None, :, None, 0], a_c[None, :, None, 1]
  inside = torch.stack([x - gt[:, None, :, 0], y - gt[:, None, :, 1], gt[:, None, :, 2] - x,
                        gt[:, None, :, 3] - y], -1).amin(-1) > 0.01
  pos = cand & (ious >= thr[:, None]) & inside & gt_mask[:, None]
  best_iou, best = torch.where(pos, ious, -torch.inf).max(-1)
  is_pos = torch.isfinite(best_iou)
  labels = torch.where(is_pos, gt_labels.gather(1, best), 0)
  return torch.where(is_pos, best, -1), labels


def iou_assign(anchors, gt, gt_labels, gt_mask, fg=0.5, bg=0.4):
  """RetinaNet's matcher with low-quality matches, batched: (assigned_gt, labels)."""
  ious = torch.where(gt_mask[:, None], box_iou(anchors, gt), -1.0)
  best_iou, best = ious.max(-1)
  gt_best = ious.amax(1, keepdim=True)
  lq = ((ious == gt_best) & gt_mask[:, None] & (gt_best > 0)).any(-1)
  pos = (best_iou >= fg) | lq
  ignore = ~pos & (best_iou >= bg)
  labels = torch.where(pos, gt_labels.gather(1, best), torch.where(ignore, -1, 0))
  return torch.where(pos, best, -1), labels


def _one_hot_targets(labels, c):
  return F.one_hot((labels - 1).clamp(min=0), c).float() * (labels > 0)[..., None]


def _bce(logits, t):
  return F.softplus(logits) - t * logits


def _focal(logits, t, alpha=0.25, gamma=2.0):
  p = torch.sigmoid(logits)
  p_t = t * p + (1 - t) * (1 - p)
  return (t * alpha + (1 - t) * (1 - alpha)) * (1 - p_t) ** gamma * _bce(logits, t)


def _giou(pred, target, anchors):
  p, t = box_decode(pred, anchors), box_decode(target, anchors)
  px1, py1 = p[..., 0], p[..., 1]
  px2, py2 = torch.maximum(px1, p[..., 2]), torch.maximum(py1, p[..., 3])
  tx1, ty1, tx2, ty2 = t.unbind(-1)
  iw = torch.minimum(px2, tx2) - torch.maximum(px1, tx1)
  ih = torch.minimum(py2, ty2) - torch.maximum(py1, ty1)
  inter = torch.where((iw > 0) & (ih > 0), iw * ih, 0.0)
  enclose = ((torch.maximum(px2, tx2) - torch.minimum(px1, tx1))
             * (torch.maximum(py2, ty2) - torch.minimum(py1, ty1)) + 1e-7)
  union = (px2 - px1) * (py2 - py1) + (tx2 - tx1) * (ty2 - ty1) - inter + 1e-7
  return 1 - (inter / union - (enclose - union) / enclose)


def _matched(gt, assigned):
  return gt.gather(1, assigned.clamp(min=0)[..., None].expand(-1, -1, 4))


def make_detector_step(loss: str, num_classes, num_anchors, backbone_features, fpn, num_convs,
                       prior_bias, anchors, num_per_level, optim, batch, topk=9, reg_weight=2.0):
  """One detector step. loss='atss': ATSS assignment, focal / num_pos + reg_weight *
  centerness-weighted GIoU + centerness BCE (papers/atss/experiment.atss_loss).
  loss='sampling_free': IoU matcher, BCE / (num_pos + images) + smooth-L1 / (4 num_pos), the
  classification loss rescaled to the regression loss' value with a detached ratio (guided
  loss scaling). Assignment runs batched under no_grad (the official code loops over images)."""
  model = Detector(num_classes, num_anchors, backbone_features, fpn, num_convs, prior_bias,
                   centerness=loss == 'atss', in_ch=batch['image'].shape[-1])
  images = _t(batch['image']).permute(0, 3, 1, 2).float().contiguous() / 255.0
  gt, gt_labels = _t(batch['boxes']), _t(batch['labels']).long()
  gt_mask = _t(batch['mask'])
  anchors = _t(anchors)

  def atss():
    cls, box, ctr = model(images)
    with torch.no_grad():
      assigned, labels = atss_assign(anchors, num_per_level, gt, gt_labels, gt_mask, topk)
      pos = labels > 0
      matched = _matched(gt, assigned)
      reg_t = torch.where(pos[..., None], box_encode(matched, anchors), 0.0)
      c = _centers(anchors)
      lr = torch.stack([c[..., 0] - matched[..., 0], matched[..., 2] - c[..., 0]], -1)
      tb = torch.stack([c[..., 1] - matched[..., 1], matched[..., 3] - c[..., 1]], -1)
      ctr_t = (lr.amin(-1) / lr.amax(-1).clamp(min=1e-6)
               * tb.amin(-1) / tb.amax(-1).clamp(min=1e-6)).clamp(min=0).sqrt()
      ctr_t = torch.where(pos, ctr_t, 0.0)
      num_pos = pos.sum().clamp(min=1)
      valid = (labels >= 0)[..., None]
    cls_loss = (_focal(cls, _one_hot_targets(labels, num_classes)) * valid).sum() / num_pos
    reg = reg_weight * (_giou(box, reg_t, anchors.expand_as(box)) * ctr_t).sum()
    reg = reg / ctr_t.sum().clamp(min=1e-6)
    return cls_loss + reg + (_bce(ctr, ctr_t) * pos).sum() / num_pos

  def sampling_free():
    cls, box, _ = model(images)
    with torch.no_grad():
      assigned, labels = iou_assign(anchors, gt, gt_labels, gt_mask)
      pos = labels > 0
      reg_t = torch.where(pos[..., None], box_encode(_matched(gt, assigned), anchors), 0.0)
      num_pos = pos.sum()
    # every anchor counts, an ignored one (label -1) as a negative (RetinaNetLossComputationFree)
    cls_loss = (_bce(cls, _one_hot_targets(labels, num_classes)).sum()
                / (num_pos + labels.shape[0]))
    d = (box - reg_t).abs()
    reg = (torch.where(d < 0.11, 0.5 * d * d / 0.11, d - 0.055) * pos[..., None]).sum()
    reg = reg / (4 * num_pos).clamp(min=1)
    return (reg / cls_loss).detach() * cls_loss + reg  # guided loss scaling (Sec. III-C)

  return _train_step(model, optim, atss if loss == 'atss' else sampling_free)


def set_threads(n: int) -> None:
  torch.set_num_threads(max(1, n))
