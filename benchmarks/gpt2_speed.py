"""How fast is stage 09's training step, and what does each speed-up buy?

    python benchmarks/gpt2_speed.py                      # the reference, GPT-2 124M, on CUDA
    python benchmarks/gpt2_speed.py --impl exercises     # your stage 09 (and your 06-08)
    python benchmarks/gpt2_speed.py --batch 16 --steps 20 --peak-tflops 989
    python benchmarks/gpt2_speed.py --cpu                # a tiny smoke run on the CPU

Prints an ablation table: each row adds one speed-up to the row above, starting from stage
08's GPT2 in float32 with masked attention, and shows the median time per step, tokens per
second, the speed-up over the first row, and the model FLOPs utilization (MFU): the FLOPs a
step needs by nanoGPT's estimate (6 N + 12 L H Q T per token, N the parameters, L layers,
H heads, Q head size, T the context) divided by the time and the GPU's dense bf16 peak
(989 TFLOP/s on an H100 SXM, 312 on an A100; --peak-tflops for others).

Without CUDA it says so and runs a tiny model on the CPU instead, marked
"CPU, not meaningful": the figures only show that the code runs.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
STAGES = ["09_speedups", "08_gpt2", "07_layernorm", "06_multihead"]
PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "4090": 165e12}

# name, then the settings of that row (each row adds one to the row before)
ROWS = [
    ("stage 08 GPT2, float32", dict(tf32=False, amp=False, flash=False, pad=False, fused=False, compile=False)),
    ("+ TF32 matmuls", dict(tf32=True, amp=False, flash=False, pad=False, fused=False, compile=False)),
    ("+ bf16 autocast", dict(tf32=True, amp=True, flash=False, pad=False, fused=False, compile=False)),
    ("+ flash attention (SDPA)", dict(tf32=True, amp=True, flash=True, pad=False, fused=False, compile=False)),
    ("+ vocab padded (x64: 50304)", dict(tf32=True, amp=True, flash=True, pad=True, fused=False, compile=False)),
    ("+ fused AdamW", dict(tf32=True, amp=True, flash=True, pad=True, fused=True, compile=False)),
    ("+ torch.compile", dict(tf32=True, amp=True, flash=True, pad=True, fused=True, compile=True)),
]


def load_train(impl: str):
    """Stage 09's train module of `impl` (solutions or exercises), with its stages 06-08; sys.path
    and the stage modules are put back afterwards, so the grader can load its own copies later."""
    base = ROOT / impl
    saved = list(sys.path)
    names = [f.stem for s in STAGES for f in (base / s).glob("*.py")]
    sys.path[:0] = [str(base / s) for s in STAGES]
    try:
        import train

        return train
    finally:
        sys.path[:] = saved
        for name in names:
            sys.modules.pop(name, None)


def flops_per_token(n_params: int, cfg: dict) -> float:
    """nanoGPT's estimate: 6 N for the matmuls with the weights (forward and backward), plus the attention."""
    L, H, Q, T = cfg["n_layer"], cfg["n_head"], cfg["n_embd"] // cfg["n_head"], cfg["block_size"]
    return 6 * n_params + 12 * L * H * Q * T


def build(train, cfg: dict, row: dict, device: str):
    torch.manual_seed(0)
    config = train.GPT2Config(**cfg)
    with torch.device(device):  # built where it runs, never in host memory first
        if row["flash"]:
            model = train.FastGPT2(config, vocab_multiple=64 if row["pad"] else 1)
        else:
            model = train.GPT2(config)
    n_params = sum(p.numel() for p in model.parameters()) - model.transformer.wpe.weight.numel()
    optimizer = train.make_optimizer(model, 0.1, 6e-4, "cuda" if row["fused"] and device == "cuda" else "cpu")
    if row["compile"]:
        model = torch.compile(model)
    return model, optimizer, n_params


def time_row(train, cfg, row, batch, steps, device) -> tuple[float, int]:
    torch.set_float32_matmul_precision("highest")
    try:
        return _time_row(train, cfg, row, batch, steps, device)
    finally:
        torch.set_float32_matmul_precision("highest")


def _time_row(train, cfg, row, batch, steps, device) -> tuple[float, int]:
    if row["tf32"]:
        train.configure_tf32()
    model, optimizer, n_params = build(train, cfg, row, device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, cfg["vocab_size"], (batch, cfg["block_size"]), generator=gen).to(device)
    y = torch.randint(0, cfg["vocab_size"], (batch, cfg["block_size"]), generator=gen).to(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    amp = torch.bfloat16 if row["amp"] else None
    for _ in range(3):  # warm-up (and compilation)
        train.train_step(model, optimizer, [(x, y)], amp_dtype=amp)
    times = []
    for _ in range(steps):
        sync()
        start = time.perf_counter()
        train.train_step(model, optimizer, [(x, y)], amp_dtype=amp)
        sync()
        times.append(time.perf_counter() - start)
    del model, optimizer
    if device == "cuda":
        torch.cuda.empty_cache()
    return statistics.median(times), n_params


GPT2_124M = dict(block_size=1024, vocab_size=50257, n_layer=12, n_head=12, n_embd=768)
TINY = dict(block_size=64, vocab_size=65, n_layer=2, n_head=2, n_embd=64)
NANOGPT_MFU_GOAL = 0.50  # nanoGPT's reported MFU for GPT-2 124M on an A100; see benchmarks/GPU.md


def peak_flops(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU we know by name, in FLOP/s."""
    return next((v for k, v in PEAKS.items() if k in device_name), None)


def ablation(train, cfg: dict, rows: list, batch: int, steps: int, device: str, peak: float | None, progress=None) -> list[dict]:
    """Each row of the table: its title, seconds per step, tokens per second, the speed-up over
    the first row, and the MFU (None without a known peak). `progress(title)` is called before each row."""
    table, first = [], None
    for title, row in rows:
        if progress:
            progress(title)
        seconds, n_params = time_row(train, cfg, row, batch, steps, device)
        tokens = batch * cfg["block_size"]
        first = first or seconds
        table.append({
            "title": title,
            "seconds": seconds,
            "tokens_per_second": tokens / seconds,
            "speedup": first / seconds,
            "mfu": flops_per_token(n_params, cfg) * tokens / seconds / peak if peak else None,
        })
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--impl", default="solutions", help="solutions (default) or exercises")
    parser.add_argument("--batch", type=int, default=16, help="sequences per step (default 16)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row (default 10)")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, if not an A100/H100/H200")
    parser.add_argument("--cpu", action="store_true", help="a tiny smoke run on the CPU")
    args = parser.parse_args()

    train = load_train(args.impl)
    cuda = torch.cuda.is_available() and not args.cpu
    if cuda:
        device, cfg, label = "cuda", GPT2_124M, ""
        name = torch.cuda.get_device_name()
        peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops(name)
        print(f"{name}: GPT-2 124M, batch {args.batch} x T 1024, {args.steps} timed steps per row")
        rows = ROWS
    else:
        if not args.cpu:
            print("No CUDA GPU here: these speed-ups are GPU features. Running a tiny model on the CPU instead;")
            print("the figures below only show that the code runs (CPU, not meaningful).")
        device, cfg, label = "cpu", TINY, " (CPU, not meaningful)"
        args.batch, args.steps, peak = min(args.batch, 4), min(args.steps, 3), None
        rows = [r for r in ROWS if not r[1]["compile"]]  # compiling for a CPU takes long and says nothing here
    print()
    print(f"{'configuration':<28} {'ms/step':>9} {'tokens/s':>12} {'speed-up':>9} {'MFU':>6}")
    for row in ablation(train, cfg, rows, args.batch, args.steps, device, peak):
        mfu = f"{row['mfu']:6.1%}" if row["mfu"] is not None else "     -"
        print(f"{row['title']:<28} {row['seconds'] * 1e3:9.1f} {row['tokens_per_second']:12,.0f} "
              f"{row['speedup']:8.2f}x {mfu}{label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
