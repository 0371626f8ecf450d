"""PyTorch side of the benchmark: the same cases as `mmkd bench`, on the reference networks
(mult_ref.py, MulT's design), printing one JSON line. bench/run.sh alternates the two.

    python reference/bench.py --case teacher-train|student-train|teacher-infer|student-infer \
        [--preset small|paper|smoke] [--batch 64] [--steps 5] [--threads 2] [--device cpu|cuda]
    python reference/bench.py --aggregate LINES.jsonl --out RESULT.json --machine NAME

Cases (as in crates/mmkd/src/bench.rs): a training step of the complete teacher (forward,
cross-entropy, backward, clip_grad_norm_ 1.0, Adam), a training step of the config-5 student
distilled with EDAM-S on its V<-A and V<-L maps (the frozen teacher's forward included), and
inference (eval mode, no_grad) of either network. Timing: median of --steps steps after one
warm-up step. Peak memory: this process's ru_maxrss (and, on a GPU, torch's peak allocation).
"""

import argparse
import json
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from mult_ref import ModelCfg, NetSpec, Network, Shape

PRESETS = {
    # (d_model, layers, heads), (text, audio, video) lengths; MOSEI's dims everywhere.
    "smoke": ((16, 1, 2), (6, 12, 12)),
    "small": ((32, 2, 4), (10, 20, 20)),
    "paper": ((64, 4, 8), (50, 500, 500)),
}


def config(preset: str, train: bool) -> tuple[ModelCfg, Shape]:
    (d, layers, heads), (lt, la, lv) = PRESETS[preset]
    drop = dict(attn_dropout_text=0.1, relu_dropout=0.1, res_dropout=0.1, embed_dropout=0.2) if train else {}
    cfg = ModelCfg(d_model=d, layers=layers, heads=heads, conv_kernel=3, temporal_width_2d=False, causal_mask=True,
                   positions_from_first_feature=True, key_padding_mask=False, **drop)
    return cfg, Shape(text_dim=300, audio_dim=74, video_dim=35, text_len=lt, audio_len=la, video_len=lv)


def inputs(shape: Shape, batch: int, device: str = "cpu") -> dict:
    g = torch.Generator().manual_seed(0)
    return {m: torch.randn(batch, shape.length(m), shape.dim(m), generator=g).to(device) for m in ("V", "A", "L")}


def edam_literal(student_maps: list, teacher_maps: list) -> torch.Tensor:
    """EDAM as printed (eq. 13): -sum_k student_k log teacher_k, averaged over rows, batch, layers, pairs."""
    terms = [-(s * torch.log(t.clamp_min(1e-8))).sum(-1).mean() for s, t in zip(student_maps, teacher_maps)]
    return torch.stack(terms).mean()


def run_case(case: str, preset: str, batch: int, steps: int, device: str = "cpu") -> list:
    train = case.endswith("-train")
    cfg, shape = config(preset, train)
    x = inputs(shape, batch, device)
    y = torch.randint(0, 7, (batch,), generator=torch.Generator().manual_seed(1)).to(device)
    times = []

    def sync():
        if device != "cpu":
            torch.cuda.synchronize()

    def timed(step):
        step()  # warm-up
        sync()
        for _ in range(max(1, steps)):
            t = time.perf_counter()
            step()
            sync()
            times.append(1e3 * (time.perf_counter() - t))

    if case in ("teacher-infer", "student-infer"):
        spec = NetSpec(teacher="complete") if case == "teacher-infer" else NetSpec(student=5)
        net = Network(spec, cfg, shape).eval().to(device)

        def step():
            with torch.no_grad():
                net(x)[0].cpu().numpy()
        timed(step)
    elif case == "teacher-train":
        net = Network(NetSpec(teacher="complete"), cfg, shape).train().to(device)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3, eps=1e-8)

        def step():
            opt.zero_grad()
            loss = F.cross_entropy(net(x)[0], y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
        timed(step)
    elif case == "student-train":
        teacher = Network(NetSpec(teacher="complete"), config(preset, False)[0], shape).eval().to(device)
        student = Network(NetSpec(student=5), cfg, shape).train().to(device)
        opt = torch.optim.Adam(student.parameters(), lr=1e-3, eps=1e-8)
        pairs = ["V<-A", "V<-L"]

        def step():
            opt.zero_grad()
            with torch.no_grad():
                _, _, t_maps, _ = teacher(x, temperatures=(1.0,))
            logits, _, s_maps, _ = student(x, temperatures=(1.0,))
            s = [layer[1.0] for p in pairs for layer in s_maps[p]]
            t = [layer[1.0] for p in pairs for layer in t_maps[p]]
            loss = F.cross_entropy(logits, y) + 0.8 * edam_literal(s, t)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            opt.step()
        timed(step)
    else:
        raise SystemExit(f"unknown case {case}")
    return times


def aggregate(lines_path: str, out: str, machine: str) -> None:
    """Median over rounds of each implementation's per-round median, the ratios mmkd / PyTorch,
    and the raw numbers, as bench/results/<machine>-<preset>.json."""
    rows = [json.loads(l) for l in open(lines_path) if l.strip().startswith("{")]
    med = {}
    rss = {}
    for r in rows:
        # mmkd with MMKD_FUSED_ATTENTION=0 is its own implementation in the table: the baseline
        # the fused attention is measured against.
        impl = r["implementation"] + ("-unfused" if r.get("attention") == "unfused" else "")
        key = (impl, r["case"], r["batch"])
        med.setdefault(key, []).append(r["median_ms"])
        rss[key] = max(rss.get(key, 0.0), r["peak_rss_mb"])
    m = {k: statistics.median(v) for k, v in med.items()}
    # mmkd's lines carry the FLOPs of a step and, under bench/run.sh, the GEMM peak they were
    # measured against (issue 21): the throughput at the median time and its share of the peak.
    flops = {}
    peak = None
    for r in rows:
        if r.get("flops_per_step"):
            impl = r["implementation"] + ("-unfused" if r.get("attention") == "unfused" else "")
            flops[(impl, r["case"], r["batch"])] = r["flops_per_step"]
            if r.get("gflops") and r.get("fraction_of_peak"):
                peak = r["gflops"] / r["fraction_of_peak"]
    gflops = {k: flops[k] / (m[k] / 1e3) / 1e9 for k in flops if k in m}

    def ratio(case, batch):
        a, b = m.get(("mmkd", case, batch)), m.get(("pytorch", case, batch))
        return a / b if a and b else None

    preset = rows[0]["preset"] if rows else "?"
    threads = rows[0]["threads"] if rows else None
    result = {
        "machine": machine,
        "preset": preset,
        "threads": threads,
        "student_infer_b1_ratio": ratio("student-infer", 1),
        "train_step_ratio_teacher": ratio("teacher-train", 64),
        "train_step_ratio_student": ratio("student-train", 64),
        "student_over_teacher_latency": (m[("mmkd", "student-infer", 1)] / m[("mmkd", "teacher-infer", 1)]) if ("mmkd", "student-infer", 1) in m and ("mmkd", "teacher-infer", 1) in m else None,
        "teacher_train_peak_rss_mb": rss.get(("mmkd", "teacher-train", 64)),
        "medians_ms": {f"{impl}/{case}/b{batch}": v for (impl, case, batch), v in sorted(m.items())},
        "peak_rss_mb": {f"{impl}/{case}/b{batch}": v for (impl, case, batch), v in sorted(rss.items())},
        "rounds": {f"{impl}/{case}/b{batch}": v for (impl, case, batch), v in sorted(med.items())},
        "gemm_peak_gflops": peak,
        "gflops": {f"{impl}/{case}/b{batch}": v for (impl, case, batch), v in sorted(gflops.items())},
        "fraction_of_peak": {f"{impl}/{case}/b{batch}": v / peak for (impl, case, batch), v in sorted(gflops.items())} if peak else {},
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case")
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (bench/gpu.sh)")
    ap.add_argument("--aggregate")
    ap.add_argument("--out")
    ap.add_argument("--machine", default="unknown")
    a = ap.parse_args()
    if a.aggregate:
        aggregate(a.aggregate, a.out, a.machine)
        return
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    times = run_case(a.case, a.preset, a.batch, a.steps, a.device)
    print(json.dumps({
        "implementation": "pytorch", "case": a.case, "preset": a.preset, "batch": a.batch, "threads": a.threads,
        "device": a.device, "median_ms": statistics.median(times), "times_ms": times,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if a.device != "cpu" else None,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    sys.exit(main())
