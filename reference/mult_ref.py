"""An independent PyTorch implementation of mmkd's networks, written from MulT's published design
(Tsai et al. 2019: fairseq-style multi-head attention, pre-LayerNorm transformer encoder,
cross-modal branches, residual output head) and ../shared/paper/METHOD.md.

It is never needed to build, run or test mmkd. It exists to check mmkd against a second
implementation (parity.py) and to generate the golden fixtures that mmkd's tests replay
(make_golden.py).

Parameters carry mmkd's names, so `load_mmkd_safetensors` reads mmkd's `best.safetensors`
directly. Two layout conventions differ from PyTorch and are converted on load and save:
- Burn's `Linear` stores its weight as [d_in, d_out] (y = x W + b); PyTorch's as [d_out, d_in].
- Burn's `LayerNorm` names its parameters `gamma` / `beta`; PyTorch's `weight` / `bias`.

Where this file follows MulT rather than mmkd's code:
- attention scales the queries by head_dim^-0.5 before the product (fairseq) and masks with
  -inf (mmkd scales the scores and fills -1e9);
- the key and the value inputs of a cross-modal transformer are embedded and normalised
  separately (MulT passes x_k and x_v through their own dropout and LayerNorm calls);
- a self-attention transformer (a branch's temporal transformer, the student's `V<-V`)
  attends in every layer to that layer's own input (MulT's `trans_*_mem`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

MODALITIES = ("V", "A", "L")  # stream order of the front end
OTHERS = {"V": ("A", "L"), "A": ("V", "L"), "L": ("V", "A")}  # mmkd's order inside a branch
NUM_CLASSES = 7


@dataclass
class ModelCfg:
    """The subset of mmkd's ModelConfig that shapes a forward pass (dropouts are training-only)."""

    d_model: int
    layers: int
    heads: int
    conv_kernel: int
    temporal_width_2d: bool
    causal_mask: bool
    positions_from_first_feature: bool
    key_padding_mask: bool
    attn_dropout_text: float = 0.0
    attn_dropout_other: float = 0.0
    relu_dropout: float = 0.0
    res_dropout: float = 0.0
    embed_dropout: float = 0.0
    out_dropout: float = 0.0

    @staticmethod
    def from_json(j: dict) -> "ModelCfg":
        keys = ModelCfg.__dataclass_fields__.keys()
        return ModelCfg(**{k: j[k] for k in keys if k in j})


@dataclass
class Shape:
    text_dim: int
    audio_dim: int
    video_dim: int
    text_len: int
    audio_len: int
    video_len: int

    @staticmethod
    def from_json(j: dict) -> "Shape":
        return Shape(**{k: j[k] for k in Shape.__dataclass_fields__.keys()})

    def length(self, m: str) -> int:
        return {"V": self.video_len, "A": self.audio_len, "L": self.text_len}[m]

    def dim(self, m: str) -> int:
        return {"V": self.video_dim, "A": self.audio_dim, "L": self.text_dim}[m]


def sinusoidal(length: int, d: int, dtype, device=None) -> torch.Tensor:
    """fairseq's SinusoidalPositionalEmbedding rows for positions 1..length (padding_idx 0):
    sines in the first half of the features, cosines in the second."""
    half = d // 2
    scale = math.log(10000) / (half - 1) if half > 1 else 0.0
    freqs = torch.exp(torch.arange(half, dtype=torch.float64) * -scale)
    pos = torch.arange(1, length + 1, dtype=torch.float64)[:, None] * freqs[None, :]
    table = torch.cat([torch.sin(pos), torch.cos(pos)], dim=1)
    if d % 2 == 1:
        table = torch.cat([table, torch.zeros(length, 1, dtype=torch.float64)], dim=1)
    return table.to(dtype=dtype, device=device)


class Attention(nn.Module):
    """fairseq/MulT multi-head attention without bias_kv or zero_attn."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.output = nn.Linear(d, d)

    def forward(self, q_in, k_in, v_in, mask, temperatures):
        b, lq, d = q_in.shape
        lk = k_in.shape[1]
        h, dh = self.heads, d // self.heads
        q = self.query(q_in) * dh ** -0.5
        k = self.key(k_in)
        v = self.value(v_in)
        q = q.view(b, lq, h, dh).transpose(1, 2)
        k = k.view(b, lk, h, dh).transpose(1, 2)
        v = v.view(b, lk, h, dh).transpose(1, 2)
        scores = q @ k.transpose(2, 3)  # [B, h, Lq, Lk]
        if mask is not None:
            scores = scores.masked_fill(mask, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        maps = {t: torch.softmax(scores / t, dim=-1).mean(dim=1) for t in temperatures}
        ctx = F.dropout(probs, p=self.dropout, training=self.training) @ v
        out = self.output(ctx.transpose(1, 2).reshape(b, lq, d))
        return out, maps


class EncoderLayer(nn.Module):
    def __init__(self, d, heads, attn_dropout, relu_dropout, res_dropout):
        super().__init__()
        self.attention = Attention(d, heads, attn_dropout)
        self.attn_norm = nn.LayerNorm(d)  # MulT's layer_norms[0], shared by query, key and value
        self.ffn_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)
        self.relu_dropout = relu_dropout
        self.res_dropout = res_dropout

    def forward(self, x, x_k, x_v, mask, temperatures):
        residual = x
        x = self.attn_norm(x)
        if x_k is None:  # self-attention: keys and values are this layer's own (normalised) input
            k = v = x
        else:
            k, v = self.attn_norm(x_k), self.attn_norm(x_v)
        a, maps = self.attention(x, k, v, mask, temperatures)
        x = residual + F.dropout(a, p=self.res_dropout, training=self.training)
        residual = x
        x = F.relu(self.fc1(self.ffn_norm(x)))
        x = self.fc2(F.dropout(x, p=self.relu_dropout, training=self.training))
        x = residual + F.dropout(x, p=self.res_dropout, training=self.training)
        return x, maps, a


class Encoder(nn.Module):
    """MulT's TransformerEncoder. `forward(x)` is self-attention, `forward(x, kv)` cross-modal."""

    def __init__(self, cfg: ModelCfg, d: int, attn_dropout: float):
        super().__init__()
        self.d = d
        self.causal = cfg.causal_mask
        self.pff = cfg.positions_from_first_feature
        self.embed_dropout = cfg.embed_dropout
        self.layers = nn.ModuleList(
            EncoderLayer(d, cfg.heads, attn_dropout, cfg.relu_dropout, cfg.res_dropout) for _ in range(cfg.layers)
        )
        self.final_norm = nn.LayerNorm(d)

    def embed(self, x):
        b, l, d = x.shape
        pos = sinusoidal(l, d, x.dtype, x.device)[None].expand(b, l, d)
        if self.pff:
            # fairseq's make_positions on x[:, :, 0]: an exactly zero entry is padding_idx -> zero row
            pos = pos * (x[:, :, :1] != 0).to(x.dtype)
        return F.dropout(math.sqrt(self.d) * x + pos, p=self.embed_dropout, training=self.training)

    def forward(self, x_in, kv_in=None, key_lengths=None, temperatures=()):
        b, lq, _ = x_in.shape
        lk = lq if kv_in is None else kv_in.shape[1]
        mask = None
        if self.causal:  # buffered_future_mask: triu(-inf, 1 + |Lk - Lq|)
            mask = torch.triu(torch.ones(lq, lk, dtype=torch.bool, device=x_in.device), diagonal=1 + abs(lk - lq))
            mask = mask[None, None]
        if key_lengths is not None:
            lens = torch.as_tensor(key_lengths, device=x_in.device).clamp(min=1)
            pad = torch.arange(lk, device=x_in.device)[None, :] >= lens[:, None]
            pad = pad[:, None, None, :]
            mask = pad if mask is None else (mask | pad)
        x = self.embed(x_in)
        x_k = x_v = None
        if kv_in is not None:
            x_k, x_v = self.embed(kv_in), self.embed(kv_in)  # two dropout masks in training, as MulT
        maps, posts = [], []
        for layer in self.layers:
            x, m, a = layer(x, x_k, x_v, mask, temperatures)
            maps.append(m)
            posts.append(a)
        return self.final_norm(x), maps, posts


class StreamConv(nn.Module):
    """Conv1D along time without bias (MulT's projections): same length (kernel k, padding
    k//2 left and (k-1)//2 right) or a downsampling to exactly `out_len` steps."""

    def __init__(self, source: str, d_in: int, d: int, kernel: int, in_len: int, out_len: int):
        super().__init__()
        self.source = source
        self.out_len = out_len
        if out_len == in_len:
            self.pad = (kernel // 2, (kernel - 1) // 2)
            self.conv = nn.Conv1d(d_in, d, kernel, bias=False)
        else:
            stride = in_len // out_len  # floor: the kernel in_len - (out_len-1)*stride is then >= stride
            k = in_len - (out_len - 1) * stride
            self.pad = (0, 0)
            self.conv = nn.Conv1d(d_in, d, k, stride=stride, bias=False)

    def forward(self, x):  # [B, L, D] -> [B, out_len, d]
        return self.conv(F.pad(x.transpose(1, 2), self.pad)).transpose(1, 2)


class Branch(nn.Module):
    def __init__(self, cfg: ModelCfg, query: str):
        super().__init__()
        d = cfg.d_model
        self.query = query
        self.cross = nn.ModuleList(Encoder(cfg, d, attn_dropout_for(cfg, k)) for k in OTHERS[query])
        width = 2 * d if cfg.temporal_width_2d else d
        self.reduce = None if cfg.temporal_width_2d else nn.Linear(2 * d, d)
        self.temporal = Encoder(cfg, width, attn_dropout_for(cfg, query))


def attn_dropout_for(cfg: ModelCfg, keys: str) -> float:
    return cfg.attn_dropout_text if keys == "L" else cfg.attn_dropout_other


class Head(nn.Module):
    """MulT's output head: proj1 -> ReLU -> dropout -> proj2, plus the input; then out_layer."""

    def __init__(self, dim: int, out_dropout: float):
        super().__init__()
        self.proj1 = nn.Linear(dim, dim)
        self.proj2 = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, NUM_CLASSES)
        self.out_dropout = out_dropout

    def forward(self, x):
        h = self.proj2(F.dropout(F.relu(self.proj1(x)), p=self.out_dropout, training=self.training))
        pen = h + x
        return pen, self.out(pen)


TEACHER_BRANCHES = {"complete": ["V", "A", "L"], "video": ["V"], "audio": ["A"], "language": ["L"]}
# (keys, queries) of each flat student; "Y<-X" means keys Y, queries X.
STUDENT_FLAT = {
    2: [("V", "V"), ("A", "V"), ("L", "V")],
    3: [("V", "V"), ("V", "L"), ("A", "L")],
    4: [("V", "V"), ("V", "A"), ("L", "A")],
    5: [("V", "V"), ("V", "L"), ("V", "A")],
}


@dataclass
class NetSpec:
    """Which network: a teacher ("complete", "video", "audio", "language") or a student
    configuration 1..5 with "downsampled" or "full-length" streams."""

    teacher: str | None = None
    student: int | None = None
    streams: str = "downsampled"
    branches: list = field(default_factory=list)
    flat: list = field(default_factory=list)

    def __post_init__(self):
        if self.teacher is not None:
            self.branches = TEACHER_BRANCHES[self.teacher]
        elif self.student == 1:
            self.branches = ["V", "A", "L"]
        else:
            self.flat = STUDENT_FLAT[self.student]


class Network(nn.Module):
    def __init__(self, spec: NetSpec, cfg: ModelCfg, shape: Shape):
        super().__init__()
        self.spec = spec
        self.cfg = cfg
        d, k = cfg.d_model, cfg.conv_kernel
        lv = shape.video_len
        if spec.teacher is not None:
            convs = [StreamConv(m, shape.dim(m), d, k, shape.length(m), shape.length(m)) for m in MODALITIES]
        else:
            if spec.streams == "downsampled":
                la, ll = min(shape.audio_len, lv), min(shape.text_len, lv)
            else:
                la, ll = lv, lv
            convs = [StreamConv("V", shape.video_dim, d, k, lv, out) for out in (lv, la, ll)]
        self.front = nn.ModuleList(convs)
        self.branches = nn.ModuleList(Branch(cfg, q) for q in spec.branches)
        self.flat = nn.ModuleList(
            Encoder(cfg, d, attn_dropout_for(cfg, keys)) for keys, _ in spec.flat
        )
        width = 2 * d if cfg.temporal_width_2d else d
        head_dim = len(spec.branches) * width if spec.branches else len(spec.flat) * d
        self.head = Head(head_dim, cfg.out_dropout)

    def forward(self, inputs: dict, temperatures=(), lengths: dict | None = None):
        """inputs: {"V": [B, Lv, Dv], "A": ..., "L": ...} (a student reads "V" only).
        lengths: per-modality valid lengths of the raw inputs (key padding), or None.
        Returns logits, penultimate, {name: [per-layer maps {t: map}]}, {name: [per-layer post]}."""
        streams = {}
        for m, conv in zip(MODALITIES, self.front):
            streams[m] = conv(inputs[conv.source])

        def key_lengths(m):
            # The stream of modality m comes from raw input conv.source; its valid length is
            # that input's length scaled onto the stream: ceil(len * out_len / full), in 1..out_len.
            if lengths is None:
                return None
            conv = self.front[MODALITIES.index(m)]
            full_len = inputs[conv.source].shape[1]
            return [max(1, min(conv.out_len, -(-(l * conv.out_len) // full_len))) for l in lengths[conv.source]]

        maps, posts, lasts = {}, {}, []

        def run(enc, name, q, kv, keys_mod):
            h, m, p = enc(q, kv, key_lengths(keys_mod), temperatures)
            maps[name], posts[name] = m, p
            return h

        for branch in self.branches:
            q = branch.query
            outs = [
                run(enc, f"{k}<-{q}", streams[q], streams[k], k) for enc, k in zip(branch.cross, OTHERS[q])
            ]
            h = torch.cat(outs, dim=2)
            if branch.reduce is not None:
                h = branch.reduce(h)
            lasts.append(run(branch.temporal, f"{q}-temporal", h, None, q)[:, -1])
        for enc, (keys, queries) in zip(self.flat, self.spec.flat):
            kv = None if keys == queries else streams[keys]  # one stream on both sides: self-attention
            lasts.append(run(enc, f"{keys}<-{queries}", streams[queries], kv, keys)[:, -1])
        pen, logits = self.head(torch.cat(lasts, dim=1))
        return logits, pen, maps, posts


# ---- mmkd's parameter names and layouts -------------------------------------------------------

def _is_layer_norm(module: nn.Module, name: str) -> bool:
    owner = module.get_submodule(name.rsplit(".", 1)[0])
    return isinstance(owner, nn.LayerNorm)


def _is_linear_weight(module: nn.Module, name: str) -> bool:
    owner = module.get_submodule(name.rsplit(".", 1)[0])
    return isinstance(owner, nn.Linear) and name.endswith(".weight")


def to_mmkd_name(module: nn.Module, name: str) -> str:
    if _is_layer_norm(module, name):
        return name[: -len("weight")] + "gamma" if name.endswith(".weight") else name[: -len("bias")] + "beta"
    return name


def mmkd_state(net: nn.Module) -> dict:
    """The network's parameters under mmkd's names and layouts (float32, contiguous)."""
    out = {}
    for name, p in net.named_parameters():
        t = p.detach()
        if _is_linear_weight(net, name):
            t = t.t()
        out[to_mmkd_name(net, name)] = t.to(torch.float32).contiguous().clone()  # a snapshot, not a view of the live parameter
    return out


def mmkd_gradients(net: nn.Module) -> dict:
    """The gradients of the network's parameters under mmkd's names and layouts (zero where a
    parameter has none)."""
    out = {}
    for name, p in net.named_parameters():
        g = p.grad.detach() if p.grad is not None else torch.zeros_like(p)
        if _is_linear_weight(net, name):
            g = g.t()
        out[to_mmkd_name(net, name)] = g.to(torch.float32).contiguous().clone()
    return out


def load_mmkd_state(net: nn.Module, tensors: dict) -> None:
    """Load mmkd-named tensors (e.g. from best.safetensors) into `net`; every parameter must be
    present with the right shape."""
    params = dict(net.named_parameters())
    expected = {to_mmkd_name(net, n) for n in params}
    missing = expected - set(tensors)
    extra = set(tensors) - expected
    if missing or extra:
        raise ValueError(f"parameter names differ: missing {sorted(missing)[:5]}, unexpected {sorted(extra)[:5]}")
    with torch.no_grad():
        for name, p in params.items():
            t = tensors[to_mmkd_name(net, name)]
            if _is_linear_weight(net, name):
                t = t.t()
            if tuple(t.shape) != tuple(p.shape):
                raise ValueError(f"{name}: expected shape {tuple(p.shape)}, found {tuple(t.shape)}")
            p.copy_(t.to(p.dtype))


def load_mmkd_safetensors(net: nn.Module, path: str) -> None:
    from safetensors.torch import load_file

    load_mmkd_state(net, load_file(path))
