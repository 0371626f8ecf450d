"""Reference cases: random weights and inputs for one network, the reference's outputs, and
(for training cases) what a few optimiser steps of the recipe do. Written as a folder that mmkd
replays (`mmkd reference run CASE`, and the golden test in crates/mmkd/tests/golden.rs):

    CASE/case.json             network, mmkd ModelConfig and DataShape, temperatures, training steps
    CASE/weights.safetensors   initial parameters under mmkd's names and layouts (float32)
    CASE/inputs.safetensors    text, audio, video [N, L, D], scores [N] (float32); lengths_* [N] (int64)
    CASE/expected.safetensors  logits, penultimate, map.t<T>.<transformer>.<layer>,
                               post.<transformer>.<layer>; training cases also loss [steps],
                               grad_norm [steps], grad1.<parameter name> (the first step's
                               gradients, before clipping), step1.<parameter name> (weights after
                               the first step) and weight.<parameter name> (after the last step)
    CASE/pytorch_f32.safetensors  training cases: step1.<name> and weight.<name> after the same
                               steps in PyTorch's float32, to measure how far float32 alone drifts

Everything is computed in float64 from the float32-rounded weights and inputs, so the expected
values carry no float32 rounding of their own.
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from safetensors.torch import save_file

from mult_ref import ModelCfg, NetSpec, Network, Shape, load_mmkd_state, mmkd_gradients, mmkd_state, to_mmkd_name

# The networks of the paper: four teachers, five student configurations in both stream modes.
NETWORKS = (
    [("teacher-" + t, {"teacher": t}) for t in ("complete", "video", "audio", "language")]
    + [(f"student{c}-{s}", {"student": c, "streams": s}) for c in range(1, 6) for s in ("downsampled", "full-length")]
)


def model_json(d, layers, heads, *, temporal_width_2d=False, key_padding_mask=False, causal_mask=True, pff=True):
    """A complete mmkd ModelConfig (dropouts 0: eval mode, and a training step that RNGs cannot
    desynchronise)."""
    return {
        "d_model": d, "layers": layers, "heads": heads, "conv_kernel": 3,
        "temporal_width_2d": temporal_width_2d,
        "attn_dropout_text": 0.0, "attn_dropout_other": 0.0, "relu_dropout": 0.0, "res_dropout": 0.0,
        "embed_dropout": 0.0, "out_dropout": 0.0,
        "causal_mask": causal_mask, "positions_from_first_feature": pff, "key_padding_mask": key_padding_mask,
    }


def shape_json(text, audio, video, dims=(300, 74, 35), n=4):
    return {"text_dim": dims[0], "audio_dim": dims[1], "video_dim": dims[2],
            "text_len": text, "audio_len": audio, "video_len": video,
            "n_train": n, "n_valid": n, "n_test": n}


def class_of(score: float) -> int:
    return int(np.round(np.clip(score, -3.0, 3.0))) + 3


def _spec(network: dict) -> NetSpec:
    return NetSpec(teacher=network.get("teacher"), student=network.get("student"),
                   streams=network.get("streams", "downsampled"))


def _perturb(net: torch.nn.Module, gen: torch.Generator) -> None:
    """Move LayerNorm gains and all biases off their constant initial values, so a parameter
    read from the wrong place cannot go unnoticed."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if to_mmkd_name(net, name).endswith(".gamma"):
                p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
            elif name.endswith(".bias") or name.endswith(".beta"):
                p.add_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def make_inputs(shape: Shape, n: int, gen: torch.Generator, key_padding: bool):
    """Random inputs; sample 0 ends in two all-zero frames in every modality (MulT's padding),
    which gives the zero position vector wherever a frame's first feature is exactly zero."""
    x = {}
    for m, name in (("L", "text"), ("A", "audio"), ("V", "video")):
        t = torch.randn(n, shape.length(m), shape.dim(m), generator=gen, dtype=torch.float64)
        t[0, -2:] = 0.0
        x[m] = t.to(torch.float32).to(torch.float64)
    scores = (torch.rand(n, generator=gen, dtype=torch.float64) * 6.0 - 3.0).to(torch.float32)
    lengths = None
    if key_padding:
        lengths = {m: [max(1, shape.length(m) - (i % 3)) for i in range(n)] for m in "LAV"}
    return x, scores, lengths


def train_steps(net, inputs, classes, lengths, train):
    """The recipe's steps: cross-entropy, global-norm clipping (clip_grad_norm_), Adam.
    Returns the losses, the gradient norms before clipping, the weights after step 1 and the
    gradients of step 1 (before clipping)."""
    net.train()  # every dropout is 0 in these cases, so train and eval compute the same thing
    opt = torch.optim.Adam(net.parameters(), lr=train["lr"], betas=(0.9, 0.999), eps=train["adam_epsilon"])
    losses, norms, step1, grad1 = [], [], None, None
    for rows in train["steps"]:
        opt.zero_grad()
        batch = {m: t[rows] for m, t in inputs.items()}
        blens = None if lengths is None else {m: [v[r] for r in rows] for m, v in lengths.items()}
        logits, _, _, _ = net(batch, (), blens)
        loss = torch.nn.functional.cross_entropy(logits, classes[rows])
        loss.backward()
        if grad1 is None:
            grad1 = mmkd_gradients(net)
        norm = torch.nn.utils.clip_grad_norm_(net.parameters(), train["grad_clip"])
        opt.step()
        losses.append(loss.item())
        norms.append(norm.item())
        if step1 is None:
            step1 = mmkd_state(net)
    return losses, norms, step1, grad1


def make_case(out_dir: str, name: str, network: dict, model: dict, shape: dict, *, n: int, seed: int,
              temperatures=(1.0, 2.0), train: dict | None = None) -> None:
    os.makedirs(out_dir, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    cfg, shp = ModelCfg.from_json(model), Shape.from_json(shape)
    net = Network(_spec(network), cfg, shp).double()
    _perturb(net, gen)
    # Round the weights to float32 first: mmkd gets exactly these values.
    weights = mmkd_state(net)
    load_mmkd_state(net, weights)
    net.eval()
    inputs, scores, lengths = make_inputs(shp, n, gen, cfg.key_padding_mask)

    expected = {}
    with torch.no_grad():
        logits, pen, maps, posts = net(inputs, temperatures, lengths)
    expected["logits"], expected["penultimate"] = logits, pen
    for tname, layers in maps.items():
        for i, per_t in enumerate(layers):
            for t, m in per_t.items():
                expected[f"map.t{t:g}.{tname}.{i}"] = m
            expected[f"post.{tname}.{i}"] = posts[tname][i]

    pytorch_f32 = None
    if train is not None:
        classes = torch.tensor([class_of(float(s)) for s in scores])
        losses, norms, step1, grad1 = train_steps(net, inputs, classes, lengths, train)
        expected["loss"] = torch.tensor(losses)
        expected["grad_norm"] = torch.tensor(norms)
        for k, v in grad1.items():
            expected[f"grad1.{k}"] = v
        for k, v in step1.items():
            expected[f"step1.{k}"] = v
        for k, v in mmkd_state(net).items():
            expected[f"weight.{k}"] = v
        # The same steps in PyTorch's float32: how far float32 arithmetic alone drifts from the
        # float64 result (Adam amplifies rounding where a gradient nearly cancels across steps).
        net32 = Network(_spec(network), cfg, shp).float()
        load_mmkd_state(net32, weights)
        inputs32 = {m: t.float() for m, t in inputs.items()}
        _, _, step1_32, grad1_32 = train_steps(net32, inputs32, classes, lengths, train)
        pytorch_f32 = {f"weight.{k}": v for k, v in mmkd_state(net32).items()}
        pytorch_f32.update({f"step1.{k}": v for k, v in step1_32.items()})
        pytorch_f32.update({f"grad1.{k}": v for k, v in grad1_32.items()})

    save_file(weights, os.path.join(out_dir, "weights.safetensors"))
    if pytorch_f32 is not None:
        save_file(pytorch_f32, os.path.join(out_dir, "pytorch_f32.safetensors"))
    tensors = {"text": inputs["L"], "audio": inputs["A"], "video": inputs["V"], "scores": scores}
    if lengths is not None:
        for m, key in (("L", "lengths_text"), ("A", "lengths_audio"), ("V", "lengths_video")):
            tensors[key] = torch.tensor(lengths[m], dtype=torch.int64)
    save_file({k: v.to(torch.float32).contiguous() if v.is_floating_point() else v for k, v in tensors.items()},
              os.path.join(out_dir, "inputs.safetensors"))
    save_file({k: v.detach().to(torch.float32).contiguous() for k, v in expected.items()},
              os.path.join(out_dir, "expected.safetensors"))
    case = {"name": name, "network": network, "model": model, "shape": shape, "samples": n,
            "temperatures": list(temperatures), "train": train, "seed": seed,
            "generator": "reference/cases.py (PyTorch %s, float64)" % torch.__version__}
    with open(os.path.join(out_dir, "case.json"), "w") as f:
        json.dump(case, f, indent=1)
        f.write("\n")
