"""`python -m grader gpucheck`: every GPU-only check and the GPT-2 benchmark, on one GPU, in one command.

The speed checks of 09_speedups and 10_llama skip without CUDA, so most machines never run
them. This command proves them where a GPU is lent, for minutes:

- each GPU check on the reference, in-process and isolated (the sandboxed child that grades
  a class): it must pass, and the report shows by how much;
- each check on its slow variant (`GPU_MUTANTS` in grader/mutants/): it must fail;
- the ablation table and the MFU of the reference's GPT-2 124M training step in bf16, from
  benchmarks/gpt2_speed.py.

It prints what it does as it goes and writes one markdown report (device, torch and CUDA
versions, each check's ratio, threshold and margin). Exit status 0 only when every reference
passes and every slow variant fails.

`--smoke` runs the same pipeline on the CPU at tiny sizes (each check's own smoke arguments,
`GPU_CHECKS` in its suite), for the project's tests: it shows that the code runs to a
verdict, not that the thresholds hold, and its exit status says only whether every run
reached one. It grades no one: only the reference and its mutants ever run here.
"""
from __future__ import annotations

import contextlib
import importlib.util
import inspect
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

STAGES = ("09_speedups", "10_llama")
DEFAULT_REPORT = Path("benchmarks") / "gpu_report.md"
DEFAULT_SMOKE_REPORT = Path("runs") / "gpucheck_smoke.md"
NEEDS_CUDA = (
    "gpucheck needs a CUDA GPU, and torch.cuda.is_available() is False here (torch {torch}). Run it on a "
    "machine with an NVIDIA GPU, or add --smoke to run the same pipeline on the CPU at tiny sizes (a test "
    "of the code, not a measurement)."
)


@dataclass(frozen=True)
class GpuCheck:
    """One check that needs CUDA, and how to measure it without enforcing it."""

    stage: object  # grader.course.Stage
    check_id: str
    title: str
    measure: object  # impl (, ref), **arguments -> SpeedVerdict
    smoke_arguments: dict

    @property
    def needs_reference(self) -> bool:
        return "ref" in inspect.signature(self.measure).parameters


@dataclass
class Outcome:
    """One measurement: a check, on the reference or a slow variant, in one mode."""

    check: GpuCheck
    variant: str  # "reference" or a mutant's name
    mode: str  # "in-process" or "isolated"
    seconds: float = 0.0
    verdict: object = None  # grader.checks.speed.SpeedVerdict, when the check reached one
    error: str = ""  # what stopped it before a verdict

    @property
    def expected_to_pass(self) -> bool:
        return self.variant == "reference"

    @property
    def as_expected(self) -> bool:
        return self.verdict is not None and self.verdict.passed == self.expected_to_pass


def gpu_checks(course, stage_ids=STAGES) -> list[GpuCheck]:
    """The checks each suite lists in GPU_CHECKS, in suite order."""
    from .runner import stage_checks

    found = []
    for stage_id in stage_ids:
        stage = course.stage(stage_id)
        for check in stage_checks(stage):
            listed = check.func.__globals__.get("GPU_CHECKS", {}).get(check.id)
            if listed is not None:
                measure, smoke_arguments = listed
                found.append(GpuCheck(stage, check.id, check.title, measure, dict(smoke_arguments)))
    return found


def gpu_mutants(stage) -> list:
    """The stage's slow variants, GPU_MUTANTS in grader/mutants/<stage>.py (selftest cannot run them)."""
    spec = importlib.util.spec_from_file_location(f"grader_gpu_mutants_{stage.id}", stage.mutants_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(getattr(module, "GPU_MUTANTS", []))


@contextlib.contextmanager
def implementation(course, stage, impl: str, isolate: bool):
    """The code at `impl` (solutions, or a folder holding the stage), loaded in-process or in the
    sandboxed child, as `check` and `grade` load it."""
    from .handle import resolve

    local = resolve(course, stage, impl, "reference")
    handle = local
    if isolate:
        from .sandbox.remote import RemoteImplementation

        handle = RemoteImplementation(local, course)
    try:
        handle.load(_all_module_names(course))
        yield handle
    finally:
        if isolate:
            handle.close()


def _all_module_names(course) -> set[str]:
    return {name for s in course.stages for name in s.module_names}


def measure(course, gpu_check: GpuCheck, impl, variant: str, mode: str, smoke: bool) -> Outcome:
    """Run one check's measurement to its verdict, without enforcing it."""
    import torch

    from .handle import reference

    outcome = Outcome(gpu_check, variant, mode)
    started = time.perf_counter()
    begin_check = getattr(impl, "begin_check", None)
    if begin_check is not None:  # isolated: the stage's limits count per check, as in grading
        begin_check(gpu_check.check_id, gpu_check.stage.time_limit)
    try:
        torch.manual_seed(0)
        arguments = dict(gpu_check.smoke_arguments) if smoke else {}
        if gpu_check.needs_reference:
            ref = reference(course, gpu_check.stage)
            ref.load(_all_module_names(course))
            arguments["ref"] = ref
        outcome.verdict = gpu_check.measure(impl, **arguments)
    except Exception as exc:  # noqa: BLE001 - the report says what stopped it
        describe = getattr(exc, "describe", None)
        outcome.error = f"{type(exc).__name__}: {describe() if callable(describe) else exc}"
    finally:
        if begin_check is not None:
            impl.end_check()
        outcome.seconds = time.perf_counter() - started
    return outcome


def plan(course, smoke: bool) -> list[tuple[str, object, bool, list[GpuCheck]]]:
    """(variant, its mutant or None for the reference, isolate, checks) to run: the reference in
    both modes; each slow variant on its own check, in-process, and isolated too in a smoke run
    (on a GPU, isolated runs of the slow variants would add minutes of compiling and prove
    nothing about the sandbox that the reference's isolated run does not)."""
    checks = gpu_checks(course)
    runs = []
    for stage_id in STAGES:
        stage_checks = [c for c in checks if c.stage.id == stage_id]
        runs += [("reference", None, isolate, stage_checks) for isolate in (False, True)]
        for mutant in gpu_mutants(course.stage(stage_id)):
            caught_by = [c for c in stage_checks if c.check_id == mutant.caught_by]
            runs += [(mutant.name, mutant, isolate, caught_by) for isolate in ((False, True) if smoke else (False,))]
    return runs


def run(course, smoke: bool, progress=print) -> list[Outcome]:
    """Every planned measurement, in order; slow variants are written to a temporary folder."""
    from .mutants import write_mutant

    started = time.perf_counter()
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="gpucheck-") as tmp:
        for variant, mutant, isolate, checks in plan(course, smoke):
            if not checks:
                continue
            stage = checks[0].stage
            impl = "solutions"
            if mutant is not None:
                folder = Path(tmp) / variant
                if not (folder / stage.id).is_dir():
                    write_mutant(mutant, course.root / "solutions" / stage.id, folder / stage.id)
                impl = str(folder)
            mode = "isolated" if isolate else "in-process"
            try:
                with implementation(course, stage, impl, isolate) as handle:
                    for gpu_check in checks:
                        progress(f"[{time.perf_counter() - started:5.0f} s] {stage.id} {gpu_check.check_id}: "
                                 f"{variant}, {mode} ...")
                        outcome = measure(course, gpu_check, handle, variant, mode, smoke)
                        progress(f"          {describe(outcome, smoke)} ({outcome.seconds:.1f} s)")
                        outcomes.append(outcome)
            except Exception as exc:  # noqa: BLE001 - the code could not even be loaded: every check says so
                for gpu_check in checks:
                    outcomes.append(Outcome(gpu_check, variant, mode, error=f"{type(exc).__name__}: {exc}"))
                progress(f"          could not load {variant} ({mode}): {exc}")
    return outcomes


def describe(outcome: Outcome, smoke: bool) -> str:
    if outcome.verdict is None:
        return f"no verdict: {outcome.error}"
    v = outcome.verdict
    if smoke:
        return f"verdict reached: ratio {v.ratio:.3g} (threshold {v.max_ratio:.3g}, not applied on the CPU)"
    return (f"ratio {v.ratio:.3g} (at most {v.max_ratio:.3g}), {'passes' if v.passed else 'fails'}"
            f"{'' if outcome.as_expected else ' -- NOT AS EXPECTED'}")


# -- the GPT-2 benchmark ------------------------------------------------------------------------


def load_benchmark(course):
    path = course.root / "benchmarks" / "gpt2_speed.py"
    spec = importlib.util.spec_from_file_location("gpt2_speed", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ablation(course, smoke: bool, progress=print) -> tuple[list[dict], dict]:
    """benchmarks/gpt2_speed.py's table for the reference: rows and the setting they ran in."""
    import torch

    bench = load_benchmark(course)
    train = bench.load_train("solutions")
    if smoke:
        # As gpt2_speed.py --cpu does: a tiny model, and no compiled row (inductor on a CPU takes
        # long and says nothing here; the smoke runs of gpu_compile_pays compile already).
        setting = dict(cfg=bench.TINY, rows=[r for r in bench.ROWS if not r[1]["compile"]], batch=2, steps=2,
                       device="cpu", peak=None)
    else:
        # Batch 8: the shapes of gpu_step_speed_vs_reference, whose compiled graph the cache then serves.
        setting = dict(cfg=bench.GPT2_124M, rows=bench.ROWS, batch=8, steps=10, device="cuda",
                       peak=bench.peak_flops(torch.cuda.get_device_name()))
    rows = bench.ablation(train, setting["cfg"], setting["rows"], setting["batch"], setting["steps"], setting["device"],
                          setting["peak"], progress=lambda title: progress(f"    ablation: {title}"))
    return rows, dict(setting, goal=bench.NANOGPT_MFU_GOAL)


# -- the report ---------------------------------------------------------------------------------


def environment(smoke: bool) -> list[str]:
    import torch

    if smoke:
        device = f"CPU ({platform.processor() or platform.machine()}): smoke run at tiny sizes, NOT a measurement"
    else:
        props = torch.cuda.get_device_properties(0)
        device = f"{torch.cuda.get_device_name(0)} ({props.total_memory / 2**30:.0f} GiB, compute capability {props.major}.{props.minor})"
    return [
        f"- Device: {device}",
        f"- torch {torch.__version__}, CUDA {torch.version.cuda or 'none'}, cuDNN "
        f"{torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else 'none'}, Python {platform.python_version()}",
    ]


def write_report(path: Path, smoke: bool, outcomes: list[Outcome], table: list[dict], setting: dict, seconds: float) -> None:
    good = all(o.as_expected for o in outcomes) if not smoke else all(o.verdict is not None for o in outcomes)
    lines = [
        "# GPU checks" + (" (CPU smoke run)" if smoke else ""),
        "",
        f"Written by `python -m grader gpucheck{' --smoke' if smoke else ''}` on {time.strftime('%Y-%m-%d %H:%M')}, "
        f"in {seconds:.0f} s. Thresholds and their reasoning: benchmarks/GPU.md.",
        "",
        *environment(smoke),
        "",
    ]
    if smoke:
        lines += ["On the CPU at tiny sizes the ratios mean nothing and no threshold applies: this run shows only that "
                  "every check reaches its verdict.", ""]
    lines += [
        "## Speed checks",
        "",
        "Ratio: the learner's time over the baseline's (lower is faster); a check passes when the ratio is at most "
        "the threshold. Margin: threshold / ratio (above 1 passes). The reference must pass, each slow variant fail.",
        "",
        "| stage | check | code | mode | ratio | threshold | margin | verdict | expected | seconds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for o in outcomes:
        expected = "pass" if o.expected_to_pass else "fail"
        if o.verdict is None:
            cells = ["-", "-", "-", f"no verdict: {o.error}".replace("|", "/").replace("\n", " ")[:300]]
        else:
            v = o.verdict
            cells = [f"{v.ratio:.3g}", f"{v.max_ratio:.3g}", f"{v.margin:.2f}", "pass" if v.passed else "fail"]
        lines.append(f"| {o.check.stage.id} | {o.check.check_id} | {o.variant} | {o.mode} | " + " | ".join(cells)
                     + f" | {expected} | {o.seconds:.1f} |")
    lines += ["", "What each check measured:", ""]
    for o in outcomes:
        if o.verdict is not None:
            r = o.verdict.result
            lines.append(f"- {o.check.check_id}, {o.variant}, {o.mode}: {r.learner_seconds * 1e3:.3g} ms vs "
                         f"{r.reference_seconds * 1e3:.3g} ms (median of {r.repeats})")
    cfg = setting["cfg"]
    lines += [
        "",
        "## Ablation: the reference's GPT-2 training step (benchmarks/gpt2_speed.py)",
        "",
        f"{cfg['n_layer']} layers, n_embd {cfg['n_embd']}, vocabulary {cfg['vocab_size']}, batch {setting['batch']} x "
        f"T {cfg['block_size']}, {setting['steps']} timed steps per row after 3 warm-up steps, on {setting['device']}. "
        "Each row adds one speed-up to the row above.",
        "",
        "| configuration | ms/step | tokens/s | speed-up | MFU |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in table:
        mfu = f"{row['mfu']:.1%}" if row["mfu"] is not None else "-"
        lines.append(f"| {row['title']} | {row['seconds'] * 1e3:.1f} | {row['tokens_per_second']:,.0f} | "
                     f"{row['speedup']:.2f}x | {mfu} |")
    peak = setting["peak"]
    lines += [
        "",
        (f"MFU: the step's FLOPs (nanoGPT's estimate, 6 N + 12 L H Q T per token) over the time and a dense bf16 peak of "
         f"{peak / 1e12:.0f} TFLOP/s. nanoGPT's goal: {setting['goal']:.0%} on an A100." if peak else
         f"MFU: not computed (no known bf16 peak for this device). nanoGPT's goal: {setting['goal']:.0%} on an A100."),
        "",
        "## Summary",
        "",
        ("Every check reached a verdict." if good else "Some checks did NOT reach a verdict: see the table.") if smoke else
        ("Every reference check passes and every slow variant fails." if good else
         "NOT as expected: see the rows whose verdict differs from the expected one, or that reached no verdict."),
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


def pipeline(course, smoke: bool, out: Path, progress=print) -> tuple[list[Outcome], list[dict], int]:
    """The speed checks, then the ablation, then the report: (outcomes, ablation rows, exit status)."""
    started = time.perf_counter()
    progress("\n".join(environment(smoke)))
    progress("GPU speed checks: the reference (in-process and isolated), then each slow variant")
    outcomes = run(course, smoke, progress=progress)
    progress(f"[{time.perf_counter() - started:5.0f} s] the ablation table of benchmarks/gpt2_speed.py")
    table, setting = ablation(course, smoke, progress=progress)
    write_report(out, smoke, outcomes, table, setting, time.perf_counter() - started)
    progress(f"[{time.perf_counter() - started:5.0f} s] report written to {out}")
    if smoke:
        return outcomes, table, 0 if all(o.verdict is not None for o in outcomes) else 1
    return outcomes, table, 0 if all(o.as_expected for o in outcomes) else 1


def command(course, smoke: bool, out: Path | None) -> int:
    import torch

    if course.is_release:
        from .course import CourseError

        raise CourseError("gpucheck needs the solutions and the mutants, which a student release does not have.")
    if not smoke and not torch.cuda.is_available():
        print(NEEDS_CUDA.format(torch=torch.__version__), file=sys.stderr)
        return 2
    out = out or course.root / (DEFAULT_SMOKE_REPORT if smoke else DEFAULT_REPORT)
    return pipeline(course, smoke, out, progress=lambda line: print(line, flush=True))[2]
