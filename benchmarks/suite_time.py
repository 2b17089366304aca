"""A suite's run time on the reference, before and after a change, side by side.

    python benchmarks/suite_time.py BASE_CHECKOUT [STAGE ...] [--rounds 3]

BASE_CHECKOUT is another checkout of the course (for example `git worktree add /tmp/base REV`).
For each stage, `python -m grader check STAGE --impl solutions` runs in the base checkout and
in this one, alternately (so a busy machine slows both alike); prints the median wall and CPU
seconds of each (CPU: the command and everything it started), their CPU ratio, and whether
both scored full marks.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader.course import load_course  # noqa: E402


def run(checkout: Path, stage: str) -> tuple[float, float, bool]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "grader", "check", stage, "--impl", "solutions"], cwd=checkout,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, done.returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base", type=Path)
    parser.add_argument("stages", nargs="*")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    stages = args.stages or [s.id for s in load_course().stages if s.available]
    print(f"{'stage':14s}{'base wall':>10s}{'cpu':>7s}{'now wall':>10s}{'cpu':>7s}{'cpu ratio':>11s}  full marks")
    for stage in stages:
        runs = {"base": [], "now": []}
        for _ in range(args.rounds):
            for side, checkout in (("base", args.base), ("now", ROOT)):
                runs[side].append(run(checkout, stage))
        wall = {side: statistics.median(r[0] for r in rs) for side, rs in runs.items()}
        cpu = {side: statistics.median(r[1] for r in rs) for side, rs in runs.items()}
        full = "/".join("yes" if all(r[2] for r in runs[side]) else "NO" for side in runs)
        print(f"{stage:14s}{wall['base']:9.1f}s{cpu['base']:6.1f}s{wall['now']:9.1f}s{cpu['now']:6.1f}s"
              f"{cpu['now'] / cpu['base']:10.2f}x  {full}")


if __name__ == "__main__":
    main()
