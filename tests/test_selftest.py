"""selftest over every available stage: the suites pass the reference, fail the stubs, catch
every mutant, and no check crashes on any mutant.

selftest runs the whole suite on every mutant, one thread at a time: the stages run two at a
time in their own processes, one per core, the slowest first.
"""
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from conftest import ROOT
from grader.course import load_course
from grader.mutants import load_mutants

WORKERS = 2


def selftest(stage_id: str) -> tuple[str, int, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # one core each
    done = subprocess.run([sys.executable, "-m", "grader", "selftest", stage_id], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=3600)
    return stage_id, done.returncode, done.stdout + done.stderr


def test_selftest_every_available_stage():
    stages = [s for s in load_course().stages if s.available]
    slowest_first = sorted(stages, key=lambda s: len(load_mutants(s)), reverse=True)
    with ThreadPoolExecutor(WORKERS) as pool:
        results = list(pool.map(selftest, [s.id for s in slowest_first]))
    failed = [f"{stage_id} (exit status {code}):\n{out}" for stage_id, code, out in results
              if code != 0 or "FAIL" in out or "selftest passed" not in out]
    assert not failed, "\n\n".join(failed)
    assert len(results) == len(stages)
