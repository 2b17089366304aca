"""Train your own GPT (stage 07) on real text, then read what it writes.

    python -m grader train                     your exercises/07_layernorm/gpt.py, with your
                                               own stage 03 (get_batch, estimate_loss) and 06
    python -m grader train --impl solutions    the reference, to see what to expect
    python -m grader train --steps 300 --out runs/quick

The model, the batches and the loss estimates are the learner's code; the training loop
around them is the grader's. The text is tinyshakespeare once fetched
(`python -m grader data fetch tinyshakespeare`), otherwise the shipped fables corpus.
Written to --out (default runs/07_layernorm/, never inside exercises/): loss.png, the
loss curve; samples.txt, what the model writes after training.
"""
from __future__ import annotations

import argparse
import importlib
import math
import re
import sys
import time
from pathlib import Path

# torch and the handle (which imports torch) are imported where they are used: the CLI builds
# its parser from this module, and `check --isolate` must start its child before torch loads.
from .course import CourseError, load_course

STAGE = "07_layernorm"
MODULES = ("batching", "gpt")  # what the loop calls: stage 03's batches and losses, stage 07's model
USED = {"batching": ("train_val_split", "get_batch", "estimate_loss")}  # the rest of stage 03 may wait

# A small char-level GPT: a few minutes on a laptop CPU, enough to learn words and line breaks.
MODEL = dict(block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.1)
BATCH_SIZE = 32
LEARNING_RATE = 1e-3
STEPS = 1000
EVAL_EVERY = 100
EVAL_ITERS = 20
SEED = 1337


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--impl", default="exercises", help="exercises (default), solutions, or a folder")
    parser.add_argument("--steps", type=int, default=STEPS, help=f"optimizer steps (default {STEPS})")
    parser.add_argument("--out", type=Path, help=f"folder for loss.png and samples.txt (default runs/{STAGE}/)")


def command(args: argparse.Namespace) -> int:
    """`python -m grader train`: returns the exit status."""
    import torch

    from .handle import resolve

    began = time.perf_counter()  # the whole run, as the learner waits for it
    impl_name = getattr(args, "impl", "exercises") or "exercises"
    steps = STEPS if getattr(args, "steps", None) is None else args.steps
    if steps < 1:
        raise CourseError("--steps must be at least 1.")
    tqdm, plt = _training_extras()
    course = load_course()
    stage = course.stage(STAGE)
    impl = resolve(course, stage, impl_name, "own" if impl_name == "exercises" else "reference")
    out = _output_folder(course.root, getattr(args, "out", None))
    unfinished = _unwritten(impl.search_path)
    if unfinished:
        raise CourseError(
            f"Your code is not finished yet: {', '.join(unfinished)} still raise NotImplementedError. "
            f"Make `python -m grader check {STAGE}` pass first, or watch the reference train: "
            "python -m grader train --impl solutions"
        )
    modules = _import(impl.search_path)
    batching, gpt = modules["batching"], modules["gpt"]

    name, text = _text()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    train_data, val_data = _learner("train_val_split", batching.train_val_split, data)
    vocab_size = len(chars)

    torch.manual_seed(SEED)
    config = _learner("GPTConfig", gpt.GPTConfig, vocab_size=vocab_size, **MODEL)
    model = _learner("GPT", gpt.GPT, config)
    n_params = sum(p.numel() for p in model.parameters())
    source = impl.search_path[0] / "gpt.py"
    shown = source.relative_to(course.root) if course.root in source.parents else source
    print(
        f"Training the GPT of {shown} ({n_params / 1e6:.2f}M parameters: {MODEL['n_layer']} layers, "
        f"{MODEL['n_head']} heads, n_embd {MODEL['n_embd']}, block_size {MODEL['block_size']}) on {name}: "
        f"{len(text):,} characters, {vocab_size} distinct, {steps} steps of {BATCH_SIZE} x {MODEL['block_size']} tokens."
    )
    if name == "fables":
        print("  (Shakespeare is more fun: python -m grader data fetch tinyshakespeare)")
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    generator = torch.Generator().manual_seed(SEED)

    def batch():
        return _learner("get_batch", batching.get_batch, train_data, BATCH_SIZE, MODEL["block_size"], generator)

    def estimate(step: int) -> dict[str, float]:
        losses = _learner(
            "estimate_loss", batching.estimate_loss, model, {"train": train_data, "val": val_data},
            BATCH_SIZE, MODEL["block_size"], EVAL_ITERS, generator,
        )
        return {"step": step, "train": float(losses["train"]), "val": float(losses["val"])}

    started = time.perf_counter()
    history, evals = _train(model, optimizer, batch, estimate, steps, vocab_size, tqdm)
    seconds = time.perf_counter() - started
    print("Sampling three texts of 400 characters ...", flush=True)
    started = time.perf_counter()
    samples = _samples(model, chars)
    sampling = time.perf_counter() - started

    out.mkdir(parents=True, exist_ok=True)
    whose = "The reference GPT" if impl_name == "solutions" else "Your GPT"
    _plot(plt, history, evals, vocab_size, f"{whose} on {name}", out / "loss.png")
    (out / "samples.txt").write_text(
        "".join(f"--- sample {i + 1} (temperature {t}) ---\n{s}\n\n" for i, (t, s) in enumerate(samples)),
        encoding="utf-8",
    )
    for i, (t, s) in enumerate(samples):
        print(f"\n--- sample {i + 1} (temperature {t}) ---\n{s}")
    final = evals[-1]
    print(
        f"\nDone in {_duration(time.perf_counter() - began)}: training {_duration(seconds)} "
        f"({len(history) * BATCH_SIZE * MODEL['block_size'] / seconds:,.0f} tokens/s, loss estimates included), "
        f"sampling {_duration(sampling)}. "
        f"Loss: train {final['train']:.3f}, val {final['val']:.3f} (it started near ln({vocab_size}) = "
        f"{math.log(vocab_size):.3f}).\nWrote {out / 'loss.png'} and {out / 'samples.txt'}."
    )
    return 0


# --- the loop ------------------------------------------------------------------------------------


def _train(model, optimizer, batch, estimate, steps: int, vocab_size: int, tqdm):
    """AdamW steps on the learner's batches; (each step's loss, the estimates every EVAL_EVERY steps).

    Ctrl-C ends training early; what was learned so far is still estimated and sampled.
    """
    import torch

    history: list[float] = []
    evals: list[dict[str, float]] = []
    bar = tqdm(range(steps), desc="training", unit="step", dynamic_ncols=True)

    def estimate_shown(step: int) -> dict[str, float]:
        # estimate_loss runs 2 x EVAL_ITERS batches with the bar standing still: say so
        bar.set_description(f"estimating the loss ({2 * EVAL_ITERS} batches)")
        result = estimate(step)
        bar.set_description("training")
        return result

    try:
        for step in bar:
            if step % EVAL_EVERY == 0:
                evals.append(estimate_shown(step))
                bar.write(_eval_line(evals[-1]))
            model.train()  # whatever estimate_loss left behind, training runs with dropout on
            x, y = batch()
            _, loss = _learner("GPT.forward", model, x, y)
            if not torch.isfinite(loss):
                raise CourseError(f"The loss became {loss.item()} at step {step}: training diverged.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.append(loss.item())
            if step == 0:
                _warn_about_init(history[0], vocab_size, bar)
            bar.set_postfix(loss=f"{sum(history[-20:]) / len(history[-20:]):.3f}")
    except KeyboardInterrupt:
        bar.write(f"Stopped at step {len(history)}; estimating and sampling the model as it is.")
    finally:
        bar.close()
    print(f"Estimating the final loss ({2 * EVAL_ITERS} batches) ...", flush=True)
    evals.append(estimate(len(history)))
    print(_eval_line(evals[-1]))
    return history, evals


def _samples(model, chars: list[str]) -> list[tuple[float, str]]:
    """Three samples of 400 characters, each started from a newline: (temperature, text)."""
    import torch

    model.eval()
    start = torch.tensor([[chars.index("\n") if "\n" in chars else 0]])
    samples = []
    # One token at a time is a stream of tiny matmuls: extra threads only wait for each
    # other (measured on 2 busy cores: 0.7 s for 100 tokens on one thread, 12 s on two).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for seed, temperature in ((0, 1.0), (1, 0.8), (2, 0.8)):
            torch.manual_seed(seed)
            ids = _learner("GPT.generate", model.generate, start, 400, temperature=temperature)
            samples.append((temperature, "".join(chars[i] for i in ids[0, 1:].tolist())))
    finally:
        torch.set_num_threads(threads)
    return samples


# --- helpers -------------------------------------------------------------------------------------


def _training_extras():
    try:
        import matplotlib
        from tqdm import tqdm

        matplotlib.use("Agg")  # files only: no window, works over ssh and in CI
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise CourseError(
            f"Training needs tqdm and matplotlib, the course's `train` extra ({exc.name} is missing). "
            "Install them with `python course.py setup`, or `pip install -e '.[train]'`."
        ) from None
    return tqdm, plt


def _output_folder(root: Path, out: Path | None) -> Path:
    folder = (out if out is not None else root / "runs" / STAGE).expanduser().resolve()
    exercises = (root / "exercises").resolve()
    if folder == exercises or exercises in folder.parents:
        raise CourseError(f"--out {folder} is inside exercises/; the grader never writes into your files. Choose another folder.")
    return folder


def _unwritten(search_path: list[Path]) -> list[str]:
    """The stubs training would run into: every part of the stage's files and of the earlier
    stages they import, and the parts of stage 03 that the loop calls."""
    from .release import unwritten_parts

    names = {name for stage in load_course().stages for name in stage.module_names}
    parts = []
    for folder in search_path:
        for name in sorted(names):
            path = folder / f"{name}.py"
            if path.is_file():
                wanted = USED.get(name)
                parts += [p for p in unwritten_parts([path]) if wanted is None or p.split(".")[0] in wanted]
    return parts


def _import(search_path: list[Path]) -> dict[str, object]:
    """The learner's modules, imported from the stage's search path (theirs first, then dependencies)."""
    course_modules = {name for s in load_course().stages for name in s.module_names}
    saved_path, saved_bytecode = list(sys.path), sys.dont_write_bytecode
    for name in course_modules:
        sys.modules.pop(name, None)  # never a copy imported from somewhere else
    sys.path[:0] = [str(p) for p in search_path]
    sys.dont_write_bytecode = True  # no __pycache__ in the learner's folders
    try:
        return {name: importlib.import_module(name) for name in MODULES}
    except ImportError as exc:
        raise CourseError(f"Could not import your code: {exc}. Searched {', '.join(map(str, search_path))}.") from None
    except Exception as exc:  # noqa: BLE001 - whatever a learner's module does at import
        raise CourseError(f"Importing your code failed: {type(exc).__name__}: {exc}") from None
    finally:
        sys.path[:] = saved_path
        sys.dont_write_bytecode = saved_bytecode


def _learner(what: str, fn, *args, **kwargs):
    """Call learner code; turn a crash into a message that says whose code and which call."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as exc:
        stub = re.search(r"Write this part of ([\w.]+)", str(exc))  # the generated stubs name their part
        raise CourseError(
            f"{stub.group(1) if stub else what} is not implemented yet. Make `python -m grader check {STAGE}` pass first."
        ) from None
    except CourseError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise CourseError(
            f"Your {what} raised {type(exc).__name__}: {exc}. Run `python -m grader check {STAGE}` "
            "(and the checks of stages 03 and 06) to find out why."
        ) from exc


def _warn_about_init(loss: float, vocab_size: int, bar) -> None:
    if abs(loss - math.log(vocab_size)) > 1.0:
        bar.write(
            f"note: the first loss is {loss:.2f}, far from ln({vocab_size}) = {math.log(vocab_size):.2f}; "
            "a fresh model should spread its bets evenly. Check the init and the final LayerNorm."
        )


def _eval_line(e: dict[str, float]) -> str:
    return f"step {int(e['step']):5d}: train loss {e['train']:.3f}, val loss {e['val']:.3f}"


def _text() -> tuple[str, str]:
    from . import data

    if data.path("tinyshakespeare") is not None:
        return "tinyshakespeare", data.corpus("tinyshakespeare")
    return "fables", data.corpus("fables")


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def _plot(plt, history: list[float], evals: list[dict[str, float]], vocab_size: int, title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(range(len(history)), history, color="tab:blue", alpha=0.25, linewidth=0.8, label="train loss (each batch)")
    window = max(1, len(history) // 50)
    if len(history) >= window:
        smooth = [sum(history[i - window:i]) / window for i in range(window, len(history) + 1)]
        ax.plot(range(window - 1, len(history)), smooth, color="tab:blue", linewidth=1.5, label="train loss (smoothed)")
    steps = [e["step"] for e in evals]
    ax.plot(steps, [e["train"] for e in evals], "o-", color="tab:green", markersize=4, label="train loss (estimate_loss)")
    ax.plot(steps, [e["val"] for e in evals], "o-", color="tab:red", markersize=4, label="val loss (estimate_loss)")
    ax.axhline(math.log(vocab_size), color="gray", linestyle="--", linewidth=1, label=f"ln({vocab_size}): uniform guess")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats per character)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
