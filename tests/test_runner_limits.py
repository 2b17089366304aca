"""A check's time limit cannot be lost: not in a garbage-collector callback (hypothesis installs
one), not to learner code that catches every exception, in-process or isolated.

The in-process runs happen in a fresh Python (a script below), so that the learner's gc
callback and the last resort, which ends the process, stay out of the test's own process.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

from conftest import ROOT

STAGE = "04_softmax"
CHECK = "softmax_matches_torch"
LIMIT = 2.0  # seconds per check in these tests
ISOLATED_LIMIT = 5.0  # ... and in isolated mode, where starting the child (torch) counts too

# Learner code that catches every exception, in a loop and in a helper, and spends most of its
# time in a garbage-collector callback (as hypothesis installs one), where Python drops any
# exception raised: the one-shot alarm the runner used to have was lost here.
SWALLOWS_EVERYTHING = '''

import gc
import time as _time


def _on_gc(phase, info):
    _time.sleep(0.002)


gc.callbacks.append(_on_gc)


def _work():
    pair = [None]
    pair[0] = pair  # a cycle for the collector
    gc.collect()


def _careful():
    try:
        _work()
    except:  # noqa: E722
        pass


def softmax(x, dim=-1):
    while True:
        try:
            _careful()
        except BaseException:
            pass
'''

# Catch-alls nested in one function, and a `finally` that continues: Python gives the grader
# no way to interrupt this in-process, so the last resort ends the run, with a report.
UNSTOPPABLE = SWALLOWS_EVERYTHING.split("def softmax")[0] + '''def softmax(x, dim=-1):
    while True:
        try:
            while True:
                try:
                    _careful()
                except:  # noqa: E722
                    pass
        except BaseException:
            continue
        finally:
            continue
'''

RUN_IN_PROCESS = '''
import dataclasses, json, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from grader import runner
from grader.course import load_course
from grader.handle import resolve

runner.GIVE_UP_SECONDS = {give_up!r}
course = load_course(Path({root!r}))
stage = dataclasses.replace(course.stage({stage!r}), check_time_limit={limit!r})
course = dataclasses.replace(course, stages=tuple(stage if s.id == stage.id else s for s in course.stages))
impl = resolve(course, stage, {folder!r}, "reference")
records = [r for only in {only!r} for r in runner.run_stage(course, stage, impl, only=only)]
print(json.dumps([dataclasses.asdict(r) for r in records]))
print(json.dumps(dict(trace_left=sys.gettrace() is not None, alarm_left=runner.signal.getitimer(runner.signal.ITIMER_REAL))))
'''


def learner(tmp_path, extra: str):
    folder = tmp_path / "submission" / STAGE
    shutil.copytree(ROOT / "solutions" / STAGE, folder)
    with open(folder / "softmax.py", "a") as f:
        f.write(extra)
    return folder.parent


def run_in_process(folder, only, give_up=10.0, timeout=60):
    script = RUN_IN_PROCESS.format(root=str(ROOT), give_up=give_up, stage=STAGE, limit=LIMIT, folder=str(folder), only=only)
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", script], cwd=folder, capture_output=True, text=True, timeout=timeout)
    return out, time.monotonic() - started


def test_in_process_limit_stops_code_that_swallows_every_exception(tmp_path):
    out, seconds = run_in_process(learner(tmp_path, SWALLOWS_EVERYTHING), [CHECK, "causal_mask_is_lower_triangular"])
    assert out.returncode == 0, out.stderr[-3000:]
    *_, records, leftovers = out.stdout.strip().splitlines()
    timed_out, after = json.loads(records)
    assert timed_out["status"] == "failed" and timed_out["points_earned"] == 0
    assert timed_out["message"].startswith(f"Took longer than this check's limit of {LIMIT:g} s")
    assert timed_out["duration"] < LIMIT + 3, timed_out  # stopped by the alarm and the line trace, not the last resort
    # The next check runs as usual, and nothing of the limit is left behind.
    assert after["status"] == "passed", after["message"]
    assert json.loads(leftovers) == {"trace_left": False, "alarm_left": [0.0, 0.0]}
    assert seconds < 30


def test_in_process_last_resort_reports_and_ends_the_run(tmp_path):
    out, seconds = run_in_process(learner(tmp_path, UNSTOPPABLE), [None], give_up=2.0)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    report = " ".join(out.stdout.split())  # as words: the report wraps its lines
    assert "Took longer than this check's limit of 2 s. " in report
    assert "could not be stopped: 2 s later it was still running" in report
    assert "a bare `except:` or `except BaseException:`" in report
    assert "Not run: the grader stopped at the check" in report  # the checks after it
    assert "Score: " in report
    assert seconds < 40


def test_isolated_parent_kills_the_child_at_the_limit(tmp_path):
    import dataclasses

    from grader.course import load_course
    from grader.handle import resolve
    from grader.runner import run_stage
    from grader.sandbox.remote import RemoteImplementation

    course = load_course(ROOT)
    stage = dataclasses.replace(course.stage(STAGE), check_time_limit=ISOLATED_LIMIT)
    course = dataclasses.replace(course, stages=tuple(stage if s.id == STAGE else s for s in course.stages))
    folder = learner(tmp_path, UNSTOPPABLE)
    started = time.monotonic()
    remote = RemoteImplementation(resolve(course, stage, str(folder), "reference"), course)
    try:
        [record] = run_stage(course, stage, remote, only=CHECK)
        assert not remote.sandbox.alive  # the child running the learner's code was killed
    finally:
        remote.close()
    assert record.status == "failed" and record.points_earned == 0
    assert record.message.startswith(f"Took longer than this check's limit of {ISOLATED_LIMIT:g} s"), record.message
    assert time.monotonic() - started < 90


def test_hypothesis_draws_no_constants_from_the_learners_files(tmp_path, monkeypatch):
    """Hypothesis reads constants from the source of local modules and draws them now and then;
    in process that would be the learner's files. The grader switches that off: whatever is
    imported, the local constants stay empty."""
    from hypothesis.internal.conjecture import providers

    import grader.runner  # noqa: F401  (switches it off)

    (tmp_path / "learner_constants.py").write_text("MAGIC = 987654321\nWORD = 'steer the examples here'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import learner_constants  # noqa: F401

    constants = providers._get_local_constants()
    assert 987654321 not in constants.integers and "steer the examples here" not in constants.strings
