"""The GPU-only checks of 09_speedups and 10_llama, run to their verdicts on the CPU.

Without CUDA those checks skip, so a crash in them (an import, a dtype, a device, an API)
would first show in front of a learner with a GPU. Here each runs its real code path at tiny
sizes on the CPU (the arguments its suite lists in GPU_CHECKS, which only these tests and
`gpucheck --smoke` pass), for the reference and for the slow variant the check must fail
(GPU_MUTANTS), in-process and in the sandboxed child. The thresholds are not applied: on a
CPU at tiny sizes the ratios mean nothing. `python -m grader gpucheck` on a GPU applies them.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

sys.path.insert(0, str(ROOT))

from grader import gpucheck  # noqa: E402
from grader.course import load_course  # noqa: E402
from grader.handle import resolve  # noqa: E402
from grader.results import SKIPPED  # noqa: E402
from grader.runner import run_stage, stage_checks  # noqa: E402

COURSE = load_course()
# Each check's threshold as benchmarks/GPU.md sets it: a smoke verdict carries the real one.
THRESHOLDS = {
    "gpu_tf32_pays": 1 / 1.5,
    "gpu_flash_attention_pays": 1 / 1.5,
    "gpu_compile_pays": 1 / 1.1,
    "gpu_step_speed_vs_reference": 1 / 0.85,
    "cache_speed_cuda": 0.5,
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """`gpucheck --smoke`, once: every measurement, the ablation table and the report."""
    out = tmp_path_factory.mktemp("gpucheck") / "report.md"
    lines = []
    outcomes, table, status = gpucheck.pipeline(COURSE, smoke=True, out=out, progress=lines.append)
    return {"outcomes": outcomes, "table": table, "status": status, "report": out.read_text(), "lines": lines}


def test_every_check_that_needs_cuda_has_a_smoke_run():
    listed = {c.check_id for c in gpucheck.gpu_checks(COURSE)}
    assert set(THRESHOLDS) == listed
    for stage_id in gpucheck.STAGES:
        stage = COURSE.stage(stage_id)
        checks = {c.id: c for c in stage_checks(stage)}
        for check_id in listed & set(checks):
            # Graded checks take only the handles: nothing a learner runs can ask for the smoke arguments.
            assert set(checks[check_id].fixtures) <= {"impl", "ref"}, check_id
        if torch.cuda.is_available():
            continue
        records = run_stage(COURSE, stage, resolve(COURSE, stage, "solutions", "reference"))
        skipped = {r.check_id for r in records if r.status == SKIPPED and "needs CUDA" in r.message}
        assert skipped == listed & set(checks), f"{stage_id}: checks that skip for lack of CUDA vs GPU_CHECKS"
        assert all(r.points_earned == 0 for r in records if r.check_id in skipped)


def test_each_check_has_one_slow_variant():
    for stage_id in gpucheck.STAGES:
        stage = COURSE.stage(stage_id)
        mutants = gpucheck.gpu_mutants(stage)
        ids = [c.check_id for c in gpucheck.gpu_checks(COURSE, [stage_id])]
        assert sorted(m.caught_by for m in mutants) == sorted(ids)
        source = (ROOT / "solutions" / stage_id / mutants[0].file).read_text()
        for mutant in mutants:
            assert mutant.apply(source) != source


def test_the_reference_reaches_every_verdict_in_process_and_isolated(smoke):
    for mode in ("in-process", "isolated"):
        got = {o.check.check_id: o for o in smoke["outcomes"] if o.variant == "reference" and o.mode == mode}
        assert set(got) == set(THRESHOLDS), mode
        for check_id, outcome in got.items():
            assert outcome.error == "" and outcome.verdict is not None, f"{check_id} ({mode}): {outcome.error}"
            assert outcome.verdict.max_ratio == pytest.approx(THRESHOLDS[check_id])
            assert math.isfinite(outcome.verdict.ratio) and outcome.verdict.ratio > 0


def test_each_slow_variant_reaches_its_check_and_names_the_cause(smoke):
    mutants = {m.name: m for s in gpucheck.STAGES for m in gpucheck.gpu_mutants(COURSE.stage(s))}
    seen = set()
    for outcome in smoke["outcomes"]:
        if outcome.variant == "reference":
            continue
        mutant = mutants[outcome.variant]
        assert outcome.check.check_id == mutant.caught_by
        assert outcome.verdict is not None, f"{mutant.name} ({outcome.mode}): {outcome.error}"
        assert outcome.verdict.max_ratio == pytest.approx(THRESHOLDS[mutant.caught_by])
        # What the learner reads if the GPU check fails names the bug.
        assert mutant.message.lower() in outcome.verdict.failure.lower()
        seen.add((mutant.name, outcome.mode))
    assert seen == {(name, mode) for name in mutants for mode in ("in-process", "isolated")}


def test_the_smoke_report_has_every_section(smoke):
    report = smoke["report"]
    assert smoke["status"] == 0, "\n".join(smoke["lines"])
    assert "NOT a measurement" in report
    for heading in ("## Speed checks", "## Ablation", "## Summary"):
        assert heading in report
    assert f"torch {torch.__version__}" in report
    rows = [line for line in report.splitlines() if line.startswith(("| 09_speedups", "| 10_llama"))]
    assert len(rows) == len(smoke["outcomes"]) and not any("no verdict" in r for r in rows)
    assert [row["title"] for row in smoke["table"]][0] == "stage 08 GPT2, float32"
    assert len(smoke["table"]) >= 5 and all(row["seconds"] > 0 for row in smoke["table"])
    assert "Every check reached a verdict." in report
    # Progress was printed as it went: one line before and one after each measurement.
    assert sum("..." in line for line in smoke["lines"]) == len(smoke["outcomes"])


def test_gpucheck_without_cuda_says_it_needs_cuda(grader):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; gpucheck runs for real here")
    out = grader("gpucheck")
    assert out.returncode == 2
    assert "gpucheck needs a CUDA GPU" in out.stderr and "--smoke" in out.stderr
    assert out.stdout == ""


MEMORY_PROBE = """
import json, resource, sys
sys.path.insert(0, {root!r})
import torch
from grader.course import load_course
from grader.handle import resolve
from grader.runner import stage_checks

course = load_course()
stage = course.stage("10_llama")
public = next(c for c in stage_checks(stage) if c.id == "cache_speed_cuda").func.__globals__
impl = resolve(course, stage, "solutions", "reference")
impl.load({{n for s in course.stages for n in s.module_names}})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
# The GPU check's own model, built as the check builds it, with "meta" standing in for the GPU.
model = public["cache_model"](impl, "meta", torch.bfloat16, public["CACHE_LLAMA"])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
state = model.state_dict()
print(json.dumps({{"grew_kib": after - before, "parameters": sum(t.numel() for t in state.values()),
                   "devices": sorted({{str(t.device) for t in state.values()}})}}))
"""


def test_the_cache_check_builds_its_big_model_on_the_target_device_not_in_host_memory():
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE.format(root=str(ROOT))], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    float32_mib = got["parameters"] * 4 / 2**20
    assert got["parameters"] > 350e6 and float32_mib > 1300  # the model the issue is about
    assert got["devices"] == ["meta"]
    # Built in host memory first, it takes its float32 size (1.4 GiB, measured) before moving.
    assert got["grew_kib"] / 1024 < 128, f"building the model took {got['grew_kib'] / 1024:.0f} MiB of host memory"
