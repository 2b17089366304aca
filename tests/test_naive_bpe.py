"""A correct but naive BPE trainer (tests/naive_bpe: minbpe-style, recounting every pair before
each merge, as the 01 handout says a learner may start) is graded through 01 in both modes,
within the stage's time limit and without a hang: every correctness check passes, and only
the speed check fails."""
from __future__ import annotations

import json
import time

import pytest

from conftest import ROOT, run_grader
from grader.course import load_course

STAGE = load_course().stage("01_bpe")
NAIVE = ROOT / "tests" / "naive_bpe"
SPEED = "training_speed"  # the one check a naive trainer must fail
# Beyond the stage's own limits, only starting Python and torch; a hang would blow through it.
HANG = STAGE.time_limit + STAGE.check_time_limit + 60


@pytest.mark.parametrize("mode", [[], ["--isolate"]], ids=["in-process", "isolated"])
def test_a_naive_trainer_is_graded_in_time(tmp_path, mode):
    results = tmp_path / "records.json"
    started = time.monotonic()
    out = run_grader("check", STAGE.id, "--impl", str(NAIVE), "--json", str(results), *mode)
    seconds = time.monotonic() - started
    assert seconds < HANG, f"grading took {seconds:.0f} s"
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    records = json.loads(results.read_text())["records"]
    print(f"\n01_bpe, naive trainer {' '.join(mode) or 'in-process'}: {seconds:.0f} s in all")
    for r in sorted(records, key=lambda r: -r["duration"])[:4]:
        print(f"  {r['check_id']:<24} {r['duration']:6.1f} s of {STAGE.check_time_limit:g} s  {r['status']}")
    wrong = {r["check_id"]: r["message"][:300] for r in records if r["status"] != "passed" and r["check_id"] != SPEED}
    assert not wrong, wrong  # every correctness check passed, none ran out of time or was left out
    [speed] = [r for r in records if r["check_id"] == SPEED]
    assert speed["status"] == "failed" and speed["points_earned"] == 0
    assert "the reference's time" in speed["message"] or "Took longer than this check's limit" in speed["message"]
