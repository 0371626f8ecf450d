"""The distillation losses and their training step, in PyTorch (float64), for golden training
cases (issue 19): CRD with memory banks on the final and penultimate layers, CRD with in-batch
negatives on post-attention outputs and attention maps, EDAM on attention maps with the student's
streams downsampled (EDAM-S) or the teacher's maps resampled by the learned row-stochastic map
(EDAM-T), and the shuffled-teacher control.

Written from ../shared/paper/METHOD.md ("Distillation"), CRD's paper and RepDistiller's
`crd/criterion.py` / `crd/memory.py` as the paper uses them, and the exact forms that mmkd's
documentation fixes where the paper leaves a choice (docs/DECISIONS.md; crate mmkd-losses' module
docs): in-batch InfoNCE for per-row and per-layer vectors, EDAM-T's `softmax_row(W_q) . A .
softmax_row(W_k)` with its interpolation initialisation, EDAM's log clamp at 1e-8, the negatives
capped at n_data - 1. Not from mmkd's Rust code.

Random draws cannot agree between two implementations unless they share a generator, so the CRD
memory bank follows mmkd's documented convention: SplitMix64 (Steele, Lea & Flood 2014) seeded with
the case's bank seed draws both banks' initial values (student bank first, row-major, each value
`u * 2 s - s` in float32 with `u` = the top 24 bits / 2^24 and `s = 1 / sqrt(dim / 3)`), then the
negatives of every step (per sample in batch order, K = n_data - 1 draws, each uniform over the
other samples by Lemire's multiply-shift with rejection).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

MASK64 = (1 << 64) - 1
CRD_DIM = 128
CRD_T = 0.07
CRD_MOMENTUM = 0.5
NCE_EPS = 1e-7
EDAM_LOG_EPS = 1e-8
UPSAMPLER_FLOOR = 0.01


class SplitMix64:
    def __init__(self, seed: int):
        self.state = seed & MASK64

    def next_u64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, n: int) -> int:
        """Uniform in 0..n (Lemire 2019)."""
        product = self.next_u64() * n
        low = product & MASK64
        if low < n:
            threshold = ((1 << 64) - n) % n
            while low < threshold:
                product = self.next_u64() * n
                low = product & MASK64
        return product >> 64

    def next_f32(self) -> float:
        return (self.next_u64() >> 40) / float(1 << 24)


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)


class MemoryBank:
    """CRD's two momentum memory banks (student embeddings, teacher embeddings), Z and NCE."""

    def __init__(self, n_data: int, seed: int, dim: int = CRD_DIM):
        import numpy as np

        self.n, self.dim = n_data, dim
        self.k = n_data - 1  # the original's 16,384 capped at the training set's other samples
        self.rng = SplitMix64(seed)
        stdv = np.float32(1.0 / math.sqrt(dim / 3.0))
        two = np.float32(2.0)

        def draw():
            vals = [np.float32(self.rng.next_f32()) * two * stdv - stdv for _ in range(n_data * dim)]
            return torch.tensor(np.array(vals, dtype=np.float32), dtype=torch.float64).view(n_data, dim)

        self.student_bank = draw()
        self.teacher_bank = draw()
        self.z_student = None
        self.z_teacher = None

    def contrast(self, positives: list[int]) -> torch.Tensor:
        rows = []
        for pos in positives:
            row = [pos]
            for _ in range(self.k):
                r = self.rng.below(self.n - 1)
                row.append(r + 1 if r >= pos else r)
            rows.append(row)
        return torch.tensor(rows)

    @staticmethod
    def nce(probs: torch.Tensor, n_data: int) -> torch.Tensor:
        """ContrastLoss: probs [B, 1 + m], column 0 the positive, noise uniform (P_n = 1 / n)."""
        b, cols = probs.shape
        m_pn = (cols - 1) / n_data
        pos = probs[:, 0]
        log_d1 = torch.log(pos / (pos + m_pn + NCE_EPS))
        log_d0 = torch.log(m_pn / (probs[:, 1:] + m_pn + NCE_EPS))
        return -(log_d1.sum() + log_d0.sum()) / b

    def loss(self, s_emb: torch.Tensor, t_emb: torch.Tensor, indices: list[int]) -> torch.Tensor:
        idx = self.contrast(indices)
        # out_v1: the student embedding against the teacher bank's rows; out_v2 the reverse.
        out_s = torch.exp(torch.einsum("bd,bkd->bk", s_emb, self.teacher_bank[idx]) / CRD_T)
        out_t = torch.exp(torch.einsum("bd,bkd->bk", t_emb, self.student_bank[idx]) / CRD_T)
        if self.z_student is None:  # fixed by the first batch, a constant from then on
            self.z_student = out_s.detach().mean().item() * self.n
            self.z_teacher = out_t.detach().mean().item() * self.n
        loss = self.nce(out_s / self.z_student, self.n) + self.nce(out_t / self.z_teacher, self.n)
        # Momentum update of each sample's row from its old value and its detached embedding;
        # an index that repeats in the batch takes its last occurrence's embedding.
        last = {i: pos for pos, i in enumerate(indices)}
        with torch.no_grad():
            for i, pos in last.items():
                self.student_bank[i] = l2_normalize(self.student_bank[i] * CRD_MOMENTUM + s_emb[pos].detach() * (1 - CRD_MOMENTUM))
                self.teacher_bank[i] = l2_normalize(self.teacher_bank[i] * CRD_MOMENTUM + t_emb[pos].detach() * (1 - CRD_MOMENTUM))
        return loss


def in_batch_crd(s_emb: torch.Tensor, t_emb: torch.Tensor) -> torch.Tensor:
    """[G, B, D] unit vectors: per group, symmetric InfoNCE with the batch's other samples as
    negatives, averaged over groups and samples."""
    g, b, _ = s_emb.shape
    logits = s_emb @ t_emb.transpose(1, 2) / CRD_T
    diag = torch.arange(b)
    s_anchor = F.log_softmax(logits, dim=2)[:, diag, diag].sum()
    t_anchor = F.log_softmax(logits, dim=1)[:, diag, diag].sum()
    return -(s_anchor + t_anchor) / (g * b)


def edam_entry(student: torch.Tensor, teacher: torch.Tensor, orientation: str) -> torch.Tensor:
    """F(a, b) = -sum_k a_k log b_k per row, averaged over rows and the batch (eq. 12-13)."""
    a, p = (student, teacher) if orientation == "literal" else (teacher, student)
    return -(a * torch.log(p.clamp_min(EDAM_LOG_EPS))).sum(dim=-1).mean()


def interpolation_logits(a_len: int, c_len: int, floor: float = UPSAMPLER_FLOOR) -> torch.Tensor:
    """EDAM-T's initial logits [a_len, c_len]: a tent (linear interpolation, half-pixel centres)
    normalised per row, plus floor / c_len, in log space."""
    ratio = c_len / a_len
    half = max(1.0, ratio)
    out = torch.empty(a_len, c_len, dtype=torch.float64)
    for a in range(a_len):
        centre = min(max((a + 0.5) * ratio - 0.5, 0.0), c_len - 1)
        w = torch.tensor([max(0.0, 1.0 - abs(c - centre) / half) for c in range(c_len)], dtype=torch.float64)
        out[a] = torch.log(w / w.sum() + floor / c_len)
    return out


def upsample(teacher_map: torch.Tensor, query_logits, key_logits) -> torch.Tensor:
    """softmax_row(W_q) . A . softmax_row(W_k), each factor only where its axis changes size."""
    out = teacher_map
    if query_logits is not None:
        out = torch.softmax(query_logits, dim=1) @ out
    if key_logits is not None:
        out = out @ torch.softmax(key_logits, dim=1)
    return out


# ---- golden distillation cases ------------------------------------------------------------------

# METHOD.md, "Student configurations": the teacher and the distilled transformer pairs (teacher
# and student transformers carry the same names), in mmkd's order.
TEACHER_OF = {1: "complete", 2: "video", 3: "language", 4: "audio", 5: "complete"}
PAIRS = {2: ["A<-V", "L<-V"], 3: ["V<-L", "A<-L"], 4: ["V<-A", "L<-A"], 5: ["V<-A", "V<-L"]}


class Heads(torch.nn.Module):
    """What trains beside the student: CRD's two embedding heads per compared vector (student
    side, teacher side) and EDAM-T's mixing logits per pair."""

    def __init__(self):
        super().__init__()
        self.crd_student = torch.nn.ModuleList()
        self.crd_teacher = torch.nn.ModuleList()
        self.logits = torch.nn.ParameterDict()

    def mmkd_state(self, grad: bool = False) -> dict:
        """mmkd's names and layouts (Burn's Linear weight is [d_in, d_out]); with `grad`, the
        parameters' gradients instead of their values."""
        def get(t):
            t = t.grad if grad else t
            return t.detach().to(torch.float32).contiguous().clone()

        out = {}
        for side in ("crd_student", "crd_teacher"):
            for p, lin in enumerate(getattr(self, side)):
                out[f"{side}.{p}.linear.weight"] = get(lin.weight).t().contiguous()
                out[f"{side}.{p}.linear.bias"] = get(lin.bias)
        for key, w in self.logits.items():
            p, which = key.split("_", 1)
            out[f"upsamplers.{p}.{which}"] = get(w)
        return out


def _traces(out, level):
    _, _, maps, posts = out
    return {name: [layer[next(iter(layer))] for layer in per] for name, per in maps.items()} if level == "attention-map" else posts


def kd_loss(d: dict, pairs: list, heads: Heads, bank, s_out, t_out, rows: list) -> torch.Tensor:
    level, method = d["level"], d["method"]
    if level in ("final", "penultimate"):
        k = 0 if level == "final" else 1
        s_emb = l2_normalize(heads.crd_student[0](s_out[k]))
        t_emb = l2_normalize(heads.crd_teacher[0](t_out[k]))
        return bank.loss(s_emb, t_emb, rows)
    s_tr, t_tr = _traces(s_out, level), _traces(t_out, level)
    if d.get("teacher_signal", "matched") == "shuffled":  # clip i gets clip i + 1's teacher outputs
        t_tr = {n: [torch.roll(x, shifts=-1, dims=0) for x in layers] for n, layers in t_tr.items()}
    if method == "crd":
        total = 0.0
        for p, name in enumerate(pairs):
            # [B, layers x rows, w] -> [layers x rows, B, w]: every (layer, row) is a group.
            s = torch.cat(s_tr[name], dim=1).transpose(0, 1)
            t = torch.cat(t_tr[name], dim=1).transpose(0, 1)
            total = total + in_batch_crd(l2_normalize(heads.crd_student[p](s)), l2_normalize(heads.crd_teacher[p](t)))
        return total / len(pairs)
    entries = []
    for p, name in enumerate(pairs):
        for s_map, t_map in zip(s_tr[name], t_tr[name]):
            if method == "edam-t":
                t_map = upsample(t_map, heads.logits[f"{p}_query_logits"] if f"{p}_query_logits" in heads.logits else None,
                                 heads.logits[f"{p}_key_logits"] if f"{p}_key_logits" in heads.logits else None)
            entries.append(edam_entry(s_map, t_map, d["orientation"]))
    return sum(entries) / len(entries)


def distill_steps(student, teacher, heads, bank, inputs, classes, d, pairs, temps, train):
    """The steps: alpha * CE + beta * L_KD, clip_grad_norm_ over the student and the heads, Adam.
    Returns the losses, CEs, L_KDs and gradient norms (before clipping) of the steps, and the
    first step's gradients (before clipping) under mmkd's names."""
    params = list(student.parameters()) + list(heads.parameters())
    opt = torch.optim.Adam(params, lr=train["lr"], betas=(0.9, 0.999), eps=train["adam_epsilon"])
    losses, ces, kds, norms = [], [], [], []
    for rows in train["steps"]:
        opt.zero_grad()
        batch = {m: x[rows] for m, x in inputs.items()}
        s_out = student(batch, temps)
        with torch.no_grad():
            t_out = teacher(batch, temps)
        ce = F.cross_entropy(s_out[0], classes[rows])
        kd = kd_loss(d, pairs, heads, bank, s_out, t_out, rows)
        loss = d["alpha"] * ce + d["beta"] * kd
        loss.backward()
        if not norms:
            from mult_ref import mmkd_gradients

            grad1 = {f"grad1.{k}": v for k, v in mmkd_gradients(student).items()}
            grad1.update({f"grad1.head.{k}": v for k, v in heads.mmkd_state(grad=True).items()})
        norms.append(torch.nn.utils.clip_grad_norm_(params, train["grad_clip"]).item())
        opt.step()
        losses.append(loss.item())
        ces.append(ce.item())
        kds.append(kd.item())
    return losses, ces, kds, norms, grad1


def make_distill_case(out_dir: str, name: str, config: int, d: dict, model: dict, shape: dict, *, n: int, seed: int,
                      train: dict) -> None:
    """A golden distillation case: the config's student and teacher with random weights, the
    heads, and `train["steps"]` optimiser steps of alpha * CE + beta * L_KD (the teacher frozen in
    eval mode; clipping by one global norm over the student and the heads; Adam)."""
    import json
    import os

    from safetensors.torch import save_file

    from cases import _perturb, class_of, make_inputs
    from mult_ref import ModelCfg, NetSpec, Network, Shape, load_mmkd_state, mmkd_state

    os.makedirs(out_dir, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    cfg, shp = ModelCfg.from_json(model), Shape.from_json(shape)
    streams = "full-length" if d["method"] == "edam-t" else "downsampled"
    student = Network(NetSpec(student=config, streams=streams), cfg, shp).double()
    teacher = Network(NetSpec(teacher=TEACHER_OF[config]), cfg, shp).double()
    for net in (student, teacher):
        _perturb(net, gen)
        load_mmkd_state(net, mmkd_state(net))  # float32-rounded, as mmkd reads them
    teacher.eval()
    student.train()  # every dropout is 0: train and eval compute the same thing
    inputs, scores, _ = make_inputs(shp, n, gen, False)
    classes = torch.tensor([class_of(float(s)) for s in scores])
    pairs = PAIRS[config]
    level = d["level"]
    temps = (d["temperature"],) if level == "attention-map" else ()

    # Widths of the compared vectors, and the heads (torch's Linear init, then float32-rounded).
    heads = Heads().double()
    with torch.no_grad():
        s0, t0 = student(inputs, temps), teacher(inputs, temps)
    expected = {}
    if d["method"] == "crd":
        if level in ("final", "penultimate"):
            k = 0 if level == "final" else 1
            widths = [(s0[k].shape[-1], t0[k].shape[-1])]
        else:
            st, tt = _traces(s0, level), _traces(t0, level)
            widths = [(st[p][0].shape[-1], tt[p][0].shape[-1]) for p in pairs]
        for ws, wt in widths:
            heads.crd_student.append(torch.nn.Linear(ws, CRD_DIM).double())
            heads.crd_teacher.append(torch.nn.Linear(wt, CRD_DIM).double())
    elif d["method"] == "edam-t":
        st, tt = _traces(s0, level), _traces(t0, level)
        for p, pair in enumerate(pairs):
            (_, ms, ns), (_, mt, nt) = st[pair][0].shape, tt[pair][0].shape
            for which, (a, c) in (("query_logits", (ms, mt)), ("key_logits", (nt, ns))):
                if a != c:
                    init = interpolation_logits(a, c).to(torch.float32)
                    expected[f"init.upsamplers.{p}.{which}"] = init
                    # Start the training away from the initial value, so a learned map read from
                    # the wrong place cannot go unnoticed.
                    moved = (init.double() + 0.3 * torch.randn(init.shape, generator=gen, dtype=torch.float64)).float().double()
                    heads.logits[f"{p}_{which}"] = torch.nn.Parameter(moved)
    with torch.no_grad():
        for p in heads.parameters():
            p.copy_(p.to(torch.float32).to(torch.float64))
    head_init, student_init = heads.mmkd_state(), mmkd_state(student)
    bank = MemoryBank(n, d["bank_seed"]) if d["method"] == "crd" and level in ("final", "penultimate") else None

    heads32 = copy.deepcopy(heads).float()
    losses, ces, kds, norms, grad1 = distill_steps(student, teacher, heads, bank, inputs, classes, d, pairs, temps, train)
    expected.update(grad1)
    expected.update({"loss": torch.tensor(losses), "ce": torch.tensor(ces), "kd": torch.tensor(kds), "grad_norm": torch.tensor(norms)})
    expected.update({f"weight.{k}": v for k, v in mmkd_state(student).items()})
    expected.update({f"head.{k}": v for k, v in heads.mmkd_state().items()})
    if bank is not None:
        expected["bank.student"], expected["bank.teacher"] = bank.student_bank, bank.teacher_bank
        expected["bank.z"] = torch.tensor([bank.z_student, bank.z_teacher])

    # The same steps in PyTorch's float32: how far float32 arithmetic alone drifts from the
    # float64 result after Adam (which amplifies rounding where a gradient nearly cancels).
    student32 = Network(NetSpec(student=config, streams=streams), cfg, shp).float()
    teacher32 = Network(NetSpec(teacher=TEACHER_OF[config]), cfg, shp).float()
    load_mmkd_state(student32, student_init)
    load_mmkd_state(teacher32, mmkd_state(teacher))
    teacher32.eval()
    student32.train()
    bank32 = None
    if bank is not None:
        bank32 = MemoryBank(n, d["bank_seed"])
        bank32.student_bank, bank32.teacher_bank = bank32.student_bank.float(), bank32.teacher_bank.float()
    *_, grad1_32 = distill_steps(student32, teacher32, heads32, bank32, {m: x.float() for m, x in inputs.items()}, classes, d, pairs, temps, train)
    pytorch_f32 = dict(grad1_32)
    pytorch_f32.update({f"weight.{k}": v for k, v in mmkd_state(student32).items()})
    pytorch_f32.update({f"head.{k}": v for k, v in heads32.mmkd_state().items()})
    save_file(pytorch_f32, os.path.join(out_dir, "pytorch_f32.safetensors"))

    save_file(student_init, os.path.join(out_dir, "weights.safetensors"))
    save_file(mmkd_state(teacher), os.path.join(out_dir, "teacher.safetensors"))
    save_file(head_init, os.path.join(out_dir, "heads.safetensors"))
    save_file({k: v.to(torch.float32).contiguous() for k, v in {"text": inputs["L"], "audio": inputs["A"], "video": inputs["V"], "scores": scores}.items()},
              os.path.join(out_dir, "inputs.safetensors"))
    save_file({k: v.detach().to(torch.float32).contiguous() for k, v in expected.items()}, os.path.join(out_dir, "expected.safetensors"))
    case = {"name": name, "network": {"student": config, "streams": streams}, "model": model, "shape": shape, "samples": n,
            "temperatures": [], "train": train, "distill": d, "seed": seed,
            "generator": "reference/distill_ref.py (PyTorch %s, float64)" % torch.__version__}
    with open(os.path.join(out_dir, "case.json"), "w") as f:
        json.dump(case, f, indent=1)
        f.write("\n")
