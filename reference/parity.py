"""Parity of mmkd against this PyTorch reference, network by network.

    python reference/parity.py [--shape small|paper|tiny] [--mmkd PATH] [--keep DIR] [--json FILE]

For every network of the paper (four teachers; five student configurations with downsampled and
with full-length streams), plus key-padding masks and MulT's 2d temporal width, it draws random
weights and inputs, computes the reference's outputs in float64, has mmkd compute the same
(`mmkd reference run`, float32 on the CPU) and compares: logits, penultimate features, every
head-averaged attention map (temperatures 1 and 2), every post-attention output, and for the two
training cases the loss, the global gradient norm and the weights after three optimiser steps.

Error measure, per tensor: max |mmkd - reference| / max |reference| (relative to the tensor's
scale, so entries near zero do not blow it up). Passes when every tensor is <= 1e-5 (forward
outputs, loss, gradient norm), with exceptions that float32 itself forces, measured rather than
assumed:
- the first training step's gradients (before clipping): <= max(1e-5, 4 x PyTorch float32's own
  error on the same tensor), since where sums cancel float32 cannot reach 1e-5 (cases.py records
  PyTorch's float32 run beside the float64 reference);
- weights after Adam steps, per element: within 1e-5 of the tensor's scale, or within 2 % of
  Adam's largest movement (0.02 x steps x lr), of the float64 reference or of PyTorch's own
  float32 run of the same steps. Adam's g / (sqrt(v) + eps) amplifies rounding where a gradient
  is near eps or cancels across steps, in PyTorch's float32 as in mmkd (at the paper shape both
  land on the same three elements, 7e-5 to 1.4e-4 from float64); a wrong gradient moves many
  elements by about lr per step. The earlier criterion (a case's worst against 2 x PyTorch
  float32's worst) is still reported, not judged: it depended on the draw;
- attention key biases: a key bias shifts a whole row of scores, which the softmax cancels, so
  its gradient is exactly zero (held to 1e-6) and Adam moves it by rounding noise (up to lr per
  step) in any framework; they must stay within steps x lr of the reference.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cases import NETWORKS, make_case, model_json, shape_json  # noqa: E402

TOL = 1e-5
SHAPES = {
    # (model: d, layers, heads), (lengths text/audio/video), samples
    "tiny": ((8, 2, 2), (3, 4, 6), (5, 4, 3), 3),
    "small": ((32, 2, 4), (10, 20, 20), (300, 74, 35), 4),  # the `small` preset's networks
    "paper": ((64, 4, 8), (50, 500, 500), (300, 74, 35), 2),  # the `paper` preset's networks
}
TRAIN = {"lr": 1e-3, "adam_epsilon": 1e-8, "grad_clip": 0.5, "steps": [[0, 1], [2, 3], [1, 2]]}


KEY_BIAS = "key bias / bound"
F32_FACTOR = 4.0  # gradients: 4x PyTorch's own float32 error where that exceeds 1e-5
ZERO_GRAD_NOISE = 1e-6  # a gradient that vanishes exactly (key biases): float32 leaves ~1e-9
ADAM_NOISE_SHARE = 0.02  # weights after Adam: 2 % of Adam's largest movement per element


KEY_BIAS_GRAD = "key-bias grad"


def group_of(name):
    # A key bias shifts a whole score row, which the softmax cancels: its gradient is exactly
    # zero and Adam moves it by rounding noise (up to lr per step) in any framework.
    if name.startswith(("weight.", "step1.")) and name.endswith("attention.key.bias"):
        return KEY_BIAS
    if name.startswith("grad1.") and name.endswith("attention.key.bias"):
        return KEY_BIAS_GRAD
    if name.startswith("grad1."):
        return "gradients, step 1"
    if name.startswith("map."):
        return "maps"
    if name.startswith("post."):
        return "post-attention"
    if name.startswith("step1."):
        return "weights, step 1"
    if name.startswith("weight."):
        return "weights, 3 steps"
    return name


def rel_err(a, b):
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) / max(scale, 1e-30) if b.size else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", choices=sorted(SHAPES), default="small")
    ap.add_argument("--mmkd", help="the mmkd binary (default: cargo run -q -p mmkd --)")
    ap.add_argument("--keep", help="write the cases here and keep them (default: a temporary folder)")
    ap.add_argument("--json", help="also write the results as JSON to this file")
    ap.add_argument("--networks", nargs="*", help="only these case names")
    args = ap.parse_args()

    (d, layers, heads), (lt, la, lv), dims, n = SHAPES[args.shape]
    shape = shape_json(lt, la, lv, dims=dims, n=max(n, 4))
    cases = [(name, net, model_json(d, layers, heads), n, None) for name, net in NETWORKS]
    cases += [
        ("teacher-audio-width2d", {"teacher": "audio"}, model_json(d, layers, heads, temporal_width_2d=True), n, None),
        ("teacher-complete-keypad", {"teacher": "complete"}, model_json(d, layers, heads, key_padding_mask=True), n, None),
        ("student5-full-length-keypad", {"student": 5, "streams": "full-length"},
         model_json(d, layers, heads, key_padding_mask=True), n, None),
        ("train-teacher-complete", {"teacher": "complete"}, model_json(d, layers, heads), 4, TRAIN),
        ("train-student5-downsampled", {"student": 5, "streams": "downsampled"}, model_json(d, layers, heads), 4, TRAIN),
    ]
    if args.networks:
        cases = [c for c in cases if c[0] in args.networks]
    root = args.keep or tempfile.mkdtemp(prefix="mmkd-parity-")
    dirs = []
    for i, (name, net, model, samples, train) in enumerate(cases):
        path = os.path.join(root, name)
        temps = () if train else (1.0, 2.0)
        make_case(path, name, net, model, shape, n=samples, seed=1000 + i, temperatures=temps, train=train)
        dirs.append(path)
    print(f"generated {len(dirs)} cases ({args.shape}: d={d}, {layers} layers, {heads} heads, "
          f"lengths {lt}/{la}/{lv}) in {root}", flush=True)

    cmd = [args.mmkd] if args.mmkd else ["cargo", "run", "-q", "-p", "mmkd", "--"]
    subprocess.run(cmd + ["reference", "run"] + dirs, check=True)

    rows, failures, earlier, with_f32 = [], [], [], []
    for path in dirs:
        case = os.path.basename(path)
        exp = load_file(os.path.join(path, "expected.safetensors"))
        got = load_file(os.path.join(path, "mmkd.safetensors"))
        f32_path = os.path.join(path, "pytorch_f32.safetensors")
        torch32 = load_file(f32_path) if os.path.exists(f32_path) else {}
        missing = sorted(set(exp) - set(got))
        if missing:
            sys.exit(f"{path}: mmkd did not produce {missing[:5]}")
        groups = {}
        for k, v in exp.items():
            g = group_of(k)
            if g == KEY_BIAS:
                steps = 1 if k.startswith("step1.") else len(TRAIN["steps"])
                err = float(np.max(np.abs(got[k].astype(np.float64) - v))) / (TRAIN["lr"] * steps)
                ok = err <= 1.0
            elif g == KEY_BIAS_GRAD:
                # Zero in exact arithmetic: what is left is float32 rounding (about 1e-9).
                err = float(np.max(np.abs(got[k].astype(np.float64) - v)))
                ok = err <= ZERO_GRAD_NOISE
            elif g == "gradients, step 1":
                # The loss's backward, before Adam: 1e-5, or 4x PyTorch's own float32 error on
                # the same tensor where float32 cannot reach 1e-5 (as the golden test).
                err = rel_err(got[k], v)
                err32 = rel_err(torch32[k], v)
                groups["PyTorch f32, grads"] = max(groups.get("PyTorch f32, grads", 0.0), err32)
                ok = err <= max(TOL, F32_FACTOR * err32)
            elif g in ("weights, step 1", "weights, 3 steps"):
                # Adam amplifies float32 rounding (gradients near eps, or cancelling across
                # steps): judged per case below against PyTorch's own float32 run.
                err = rel_err(got[k], v)
                g32 = "PyTorch f32, step 1" if g == "weights, step 1" else "PyTorch f32, 3 steps"
                groups[g32] = max(groups.get(g32, 0.0), rel_err(torch32[k], v))
                ok = True
            else:
                err = rel_err(got[k], v)
                ok = err <= TOL
            groups[g] = max(groups.get(g, 0.0), err)
            if not ok:
                failures.append(f"{case}: {k}: {err:.2e}")
        # Weights after Adam: per element, within 1e-5 of the tensor's scale or within
        # ADAM_NOISE_SHARE of Adam's largest movement (lr per step). Adam divides each gradient
        # by its own running size, so an element whose gradient sits at float32's noise level
        # moves by an amount float32 cannot fix, in PyTorch's float32 as in mmkd; a wrong
        # gradient moves many elements by about lr per step. (Until 2026-12-04 the criterion
        # was the case's worst tensor against 2x PyTorch float32's worst, which depended on
        # the draw: both shapes' teacher cases failed it by 2.5-3.8x while every gradient
        # agreed; results/parity-*-2026-12-04.txt report both.)
        for k, v in exp.items():
            g = group_of(k)
            if g not in ("weights, step 1", "weights, 3 steps"):
                continue
            steps = 1 if g == "weights, step 1" else len(TRAIN["steps"])
            scale = float(np.max(np.abs(v))) if v.size else 0.0
            allowance = ADAM_NOISE_SHARE * steps * TRAIN["lr"]

            def beyond(x):
                d = np.abs(got[k].astype(np.float64) - x.astype(np.float64))
                return (d > TOL * scale) & (d > allowance)

            # An element may also sit where PyTorch's own float32 run lands: then float32
            # arithmetic, not mmkd, is what departs from the float64 reference.
            off = beyond(v)
            bad = int(np.sum(off & beyond(torch32[k])))
            if off.any():
                with_f32.append(f"{case}: {k}: {int(off.sum())} elements beyond the float64 bound, "
                                f"{int(off.sum()) - bad} of them where PyTorch's float32 lands too")
            if bad:
                failures.append(f"{case}: {k}: {bad} elements beyond 1e-5 relative and {ADAM_NOISE_SHARE} x steps x lr "
                                "of both the float64 reference and PyTorch's float32")
        for g, g32 in (("weights, step 1", "PyTorch f32, step 1"), ("weights, 3 steps", "PyTorch f32, 3 steps")):
            if g in groups and groups[g] > max(TOL, 2.0 * groups[g32]):
                earlier.append(f"{case}: {g}: {groups[g]:.2e}, PyTorch float32 {groups[g32]:.2e}")
        rows.append({"case": case, "tensors": len(exp), "max_err": groups})

    names = ["logits", "penultimate", "maps", "post-attention", "loss", "grad_norm", "gradients, step 1",
             "PyTorch f32, grads", KEY_BIAS_GRAD, "weights, step 1", "PyTorch f32, step 1", "weights, 3 steps",
             "PyTorch f32, 3 steps", KEY_BIAS]
    print(f"\n{'case':<28} {'tensors':>7} " + " ".join(f"{n[:12]:>12}" for n in names))
    for r in rows:
        cells = [f"{r['max_err'][n]:12.2e}" if n in r["max_err"] else f"{'-':>12}" for n in names]
        print(f"{r['case']:<28} {r['tensors']:>7} " + " ".join(cells))
    forward = max(v for r in rows for g, v in r["max_err"].items() if g in names[:4])
    print(f"\nforward outputs (logits, penultimate, maps, post-attention): worst {forward:.2e}")
    print("criteria: every tensor <= 1e-5, except: the first step's gradients <= max(1e-5, 4 x PyTorch's own "
          "float32 error on the tensor); key-bias gradients (exactly zero) <= 1e-6; weights after Adam steps, per "
          f"element, within 1e-5 of the tensor's scale or {ADAM_NOISE_SHARE} x steps x lr of the float64 reference or "
          "of PyTorch's float32 run; key biases moved <= "
          "steps x lr: see README")
    for f in earlier:
        print("earlier criterion (case's worst weights <= 2 x PyTorch float32's worst), not met:", f)
    for f in with_f32:
        print("after Adam:", f)
    for f in failures:
        print("FAIL", f)
    ok = not failures
    print("PASS" if ok else f"FAIL ({len(failures)} tensors)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"shape": args.shape, "tolerance": TOL, "forward_worst": forward, "pass": ok,
                       "failures": failures, "earlier_criterion_not_met": earlier,
                       "beyond_float64_after_adam": with_f32, "cases": rows}, f, indent=1)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
