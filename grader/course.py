"""The course as course.toml describes it: stages, their files, points and rules."""
from __future__ import annotations

import difflib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
RELEASE_MANIFEST = Path(__file__).resolve().parent / "release_manifest.json"


class CourseError(Exception):
    """A problem the person at the terminal can fix; its message says how."""


@dataclass(frozen=True)
class Stage:
    id: str
    title: str
    points: int
    files: tuple[str, ...]
    forbidden: tuple[str, ...]
    time_limit: float
    check_time_limit: float
    available: bool
    # Limits of isolated grading (`check --isolate`, grader/sandbox); 0 means the default
    # that grader.sandbox.jail.Limits.for_stage computes.
    cpu_limit: float = 0.0  # CPU seconds for the whole stage (default: time_limit x cores)
    check_cpu_limit: float = 0.0  # CPU seconds for one check (default: check_time_limit x cores)
    memory_limit: int = 0  # MiB per process (default 4096)
    max_processes: int = 0  # processes and threads at once (default 32 + 2 x cores)
    output_limit: int = 0  # KiB printed per check, and the largest file written (default 1024)

    @property
    def module_names(self) -> tuple[str, ...]:
        return tuple(Path(f).stem for f in self.files)

    @property
    def suite_dir(self) -> Path:
        return ROOT / "grader" / "suites" / self.id

    @property
    def mutants_file(self) -> Path:
        return ROOT / "grader" / "mutants" / f"{self.id}.py"


@dataclass(frozen=True)
class Course:
    name: str
    title: str
    stages: tuple[Stage, ...]
    root: Path = ROOT
    hidden: dict = field(default_factory=dict)  # in a student release: stage -> hidden check count

    @property
    def is_release(self) -> bool:
        return not (self.root / "solutions").is_dir()

    def stage(self, stage_id: str) -> Stage:
        for stage in self.stages:
            if stage.id == stage_id:
                return stage
        ids = [s.id for s in self.stages]
        # Learners type "5_attention" or "attention"; suggest the id they meant.
        by_topic = [s for s in ids if s.split("_", 1)[1] == stage_id.split("_", 1)[-1]]
        close = by_topic or difflib.get_close_matches(stage_id, ids, n=1)
        hint = f" Did you mean {close[0]}?" if close else ""
        raise CourseError(f"There is no stage '{stage_id}'.{hint} The stages are: {', '.join(ids)}.")

    def find_stage(self, text: str) -> Stage:
        """The stage a learner means: `05_attention`, `05`, `5` and `attention` (any case) are
        all 05_attention. Anything else gets `stage`'s answer, with a "did you mean"."""
        key = text.strip().lower()
        number, _, topic = key.partition("_") if key[:1].isdigit() else ("", "", key)
        for stage in self.stages:
            stage_number, stage_topic = stage.id.split("_", 1)
            same_number = number.isdigit() and int(number) == int(stage_number)
            if key == stage.id or (same_number and topic in ("", stage_topic)) or (not number and topic == stage_topic):
                return stage
        return self.stage(text)

    def available_stage(self, text: str) -> Stage:
        stage = self.find_stage(text)
        if not stage.available:
            raise CourseError(f"Stage {stage.id} ({stage.title}) is not available yet. Run `python -m grader list` to see what is.")
        return stage

    def dependencies(self, stage: Stage) -> list[Stage]:
        """The stages `stage` may build on, nearest first: every earlier stage.

        Derived from the order of the stages, never from a hand-kept list that could miss
        one: a learner's 06 that does `from softmax import causal_mask` imports the same way
        in every mode (check, --isolate, grade, nbgrader, Gradescope).
        """
        index = [s.id for s in self.stages].index(stage.id)  # by id: a copy with other limits is the same stage
        return [s for s in reversed(self.stages[:index]) if s.available]


def load_course(root: Path = ROOT) -> Course:
    path = root / "course.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CourseError(f"{path} is missing; run the grader from the course folder.") from None
    except tomllib.TOMLDecodeError as exc:
        raise CourseError(f"{path} is not valid TOML: {exc}") from None
    stages = []
    for entry in data.get("stage", []):
        stages.append(
            Stage(
                id=entry["id"],
                title=entry["title"],
                points=int(entry["points"]),
                files=tuple(entry["files"]),
                forbidden=tuple(entry.get("forbidden", ())),
                time_limit=float(entry.get("time_limit", 120)),
                check_time_limit=float(entry.get("check_time_limit", 60)),
                available=bool(entry.get("available", False)),
                cpu_limit=float(entry.get("cpu_limit", 0)),
                check_cpu_limit=float(entry.get("check_cpu_limit", 0)),
                memory_limit=int(entry.get("memory_limit", 0)),
                max_processes=int(entry.get("max_processes", 0)),
                output_limit=int(entry.get("output_limit", 0)),
            )
        )
    hidden = {}
    if RELEASE_MANIFEST.is_file():
        hidden = json.loads(RELEASE_MANIFEST.read_text(encoding="utf-8"))["hidden_checks"]
    meta = data.get("course", {})
    return Course(meta.get("name", "course"), meta.get("title", ""), tuple(stages), root, hidden)
