"""What isolated grading costs: `check` in-process vs `check --isolate`, side by side.

    python benchmarks/isolation.py [STAGE ...] [--rounds 3] [--impl solutions]

For each stage, runs the two commands alternately (so a busy machine slows both alike) and
prints the median wall time of each, their ratio, and whether the scores agree. Also prints
the time inside the checks alone (the sum of the records' durations), which leaves out the
start-up of Python and torch.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grader.course import load_course  # noqa: E402


def run(stage: str, impl: str, isolate: bool, out: Path) -> tuple[float, float, float, list]:
    command = [sys.executable, "-m", "grader", "check", stage, "--impl", impl, "--json", str(out)]
    if isolate:
        command.append("--isolate")
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, capture_output=True, timeout=900)
    wall = time.perf_counter() - start
    payload = json.loads(out.read_text())
    inside = sum(r["duration"] for r in payload["records"])
    outcome = [(r["check_id"], r["status"], r["points_earned"]) for r in payload["records"]]
    return wall, inside, payload["score"], outcome


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stages", nargs="*")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--impl", default="solutions")
    args = parser.parse_args()
    course = load_course()
    stages = args.stages or [s.id for s in course.stages if s.available]
    print(f"{'stage':<13} {'in-process':>10} {'isolated':>9} {'ratio':>6}   {'checks only':>20}   scores")
    with tempfile.TemporaryDirectory() as tmp:
        for stage in stages:
            times = {False: [], True: []}
            inside = {False: [], True: []}
            scores, outcomes = {}, {}
            for _ in range(args.rounds):
                for isolate in (False, True):
                    wall, checks, score, outcome = run(stage, args.impl, isolate, Path(tmp) / "r.json")
                    times[isolate].append(wall)
                    inside[isolate].append(checks)
                    scores[isolate], outcomes[isolate] = score, outcome
            a, b = statistics.median(times[False]), statistics.median(times[True])
            ca, cb = statistics.median(inside[False]), statistics.median(inside[True])
            same = "same" if outcomes[False] == outcomes[True] else "DIFFERENT"
            print(
                f"{stage:<13} {a:9.1f}s {b:8.1f}s {b / a:6.2f}   {ca:6.1f}s vs {cb:5.1f}s {cb / max(ca, 1e-9):5.2f}   "
                f"{scores[False]:g} / {scores[True]:g} {same}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
