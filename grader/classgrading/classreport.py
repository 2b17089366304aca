"""The class report: one HTML page on how a class did on a stage.

    python -m grader report RECORDS_FOLDER [--out FILE]

`grade` writes it as OUT/report.html, with its plots as PNG files in OUT/report/. It shows
the score distribution, each check's pass rate, the bugs the class made most often, and
who could not be graded, and why. The page is one self-contained file: its plots are
embedded, it loads nothing and runs no script (its Content-Security-Policy forbids both), so
it opens anywhere, offline, and can be mailed or uploaded as it is.

It reads grade's records (OUT/records/<learner>.json, or `check --json` files) and
Gradescope's results (<learner>/results.json, as `grade --export gradescope` and the
course's autograder write them). Everything in them is the learners' text (names, messages
that quote their exceptions): every piece of it is escaped before it reaches the page.

Each learner who lost points counts under one problem: the known bug (grader/mutants) named
by their first failing check that names one, that is, the check that catches that bug
failed with the bug's phrase in its message, as `selftest` proves each suite does; or else
the first sentence of their first failing check's message.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
import stat
import statistics
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterable

from .. import intake
from ..course import CourseError, load_course
from ..results import ERROR, FAILED, PASSED, SKIPPED, Record, score

PLOTS = ("scores", "pass_rates")
MAX_FILE_BYTES = 50 << 20  # a results file larger than this is not a learner's records
MESSAGE_CHARS = 2000  # of a note or message shown on the page
TOP_BUGS = 25
STATUSES = (PASSED, FAILED, ERROR, SKIPPED)
RECORD_FIELDS = {f.name for f in fields(Record)}
# What the page may do: show its own styles and embedded images, nothing else.
CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@dataclass
class LearnerResult:
    """One learner's records, from wherever they were read. A note means not graded to the end."""

    learner: str
    records: list[Record]
    note: str = ""

    @property
    def score(self) -> tuple[float, float]:
        return score(self.records)

    @property
    def graded(self) -> bool:
        return not self.note


@dataclass
class Problem:
    """Something the class made: a known bug, or the first sentence of a failing message."""

    label: str
    known_bug: str = ""  # the mutant's name, when it is a known bug
    found_by: str = ""  # the title of the check whose message names it
    learners: list[str] = field(default_factory=list)


# --- reading results -------------------------------------------------------------------

def from_outcomes(outcomes: Iterable) -> list[LearnerResult]:
    """grade's Outcomes, as the report reads them."""
    return [LearnerResult(o.learner, list(o.records), o.note) for o in outcomes]


def read_folder(folder: Path) -> tuple[list[LearnerResult], list[str]]:
    """The learners' results in `folder`, and what could not be read there, and why.

    Reads grade's records (*.json in the folder; its records/ subfolder when given grade's
    output folder) and Gradescope's results (*/results.json). Links are never followed and
    anything odd is skipped with a reason: the folder may hold what others handed over.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CourseError(f"{folder} is not a folder. Give grade's records folder (OUT/records) or a folder "
                          "of Gradescope results (one folder per learner, each with results.json).")
    results: list[LearnerResult] = []
    problems: list[str] = []
    entries = _entries(folder, problems)
    records = folder / "records"
    grade_output = records.is_dir() and not records.is_symlink() and not os.path.lexists(records / "results.json")
    if grade_output and not any(e.name.endswith(".json") for e in entries):
        return read_folder(records)  # grade's output folder: its records are the whole story
    for entry in entries:
        path = Path(entry.path)
        if entry.is_symlink():
            problems.append(f"{intake.shown(entry.name)}: a link, not followed.")
        elif entry.is_dir(follow_symlinks=False):
            inner = path / "results.json"
            if os.path.lexists(inner):
                _read_into(inner, intake.shown(entry.name), _gradescope_learner, results, problems)
            else:
                problems.append(f"{intake.shown(entry.name)}/: no results.json in this folder.")
        elif entry.name.endswith(".json"):
            _read_into(path, intake.shown(path.stem), _grade_learner, results, problems)
    seen: set[str] = set()
    unique = []
    for result in results:
        if result.learner in seen:
            problems.append(f"{result.learner}: results found twice; the first ones are shown.")
            continue
        seen.add(result.learner)
        unique.append(result)
    if not unique and _looks_like_nbgrader(folder):
        from .nbgrader_course import REPORT_RECORDS

        stages = sorted(p.name for p in (folder / REPORT_RECORDS).glob("*") if p.is_dir())
        where = ", ".join(str(folder / REPORT_RECORDS / s) for s in stages) or f"{folder / REPORT_RECORDS}/<stage>, once autograde has run"
        raise CourseError(
            f"{folder} is an nbgrader course folder: autograde keeps each stage's check-by-check results in "
            f"{where}. Give that folder."
        )
    return sorted(unique, key=lambda r: r.learner), problems


def _entries(folder: Path, problems: list[str]) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as exc:
        problems.append(f"{intake.shown(str(folder))}: cannot be listed ({exc.strerror}).")
        return []


def _looks_like_nbgrader(folder: Path) -> bool:
    return (folder / "nbgrader_config.py").is_file() or (folder / "gradebook.db").is_file()


def _read_into(path: Path, name: str, parse, results: list, problems: list[str]) -> None:
    shown = intake.shown(str(path.name if parse is _grade_learner else f"{name}/{path.name}"))
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError("not a regular file (a link is never followed)")
        if info.st_size > MAX_FILE_BYTES:
            raise ValueError(f"{info.st_size} bytes, too large for results")
        payload = json.loads(path.read_bytes().decode("utf-8"))
        if not isinstance(payload, dict):
            raise ValueError("not a JSON object")
        result = parse(payload, name)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        problems.append(f"{shown}: not read ({exc}).")
        return
    if result is not None:
        results.append(result)


def _grade_learner(payload: dict, name: str) -> LearnerResult | None:
    """grade's records file (or `check --json`'s, named after the learner)."""
    if "records" not in payload:
        return None  # some other JSON file, such as a Classroom export
    learner = payload.get("learner")
    records = [_record(r) for r in _list(payload["records"])]
    note = payload.get("note") or ""
    if not isinstance(note, str):
        raise ValueError("its note is not text")
    return LearnerResult(intake.shown(learner) if isinstance(learner, str) and learner else name, records, note)


def _record(raw) -> Record:
    if not isinstance(raw, dict):
        raise ValueError("a record is not a JSON object")
    values = {k: v for k, v in raw.items() if k in RECORD_FIELDS}  # fields added later are not needed here
    record = Record(**values)
    _check_record(record)
    return record


def _check_record(r: Record) -> None:
    for name in ("stage", "check_id", "title", "status", "message", "visibility"):
        if not isinstance(getattr(r, name), str):
            raise ValueError(f"a record's {name} is not text")
    if r.status not in STATUSES:
        raise ValueError(f"a record's status is {r.status!r}")
    for name in ("points_earned", "points_possible"):
        value = getattr(r, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"a record's {name} is not a number")


def _gradescope_learner(payload: dict, name: str) -> LearnerResult:
    """Gradescope's results.json (grader/exporters.py writes it; any autograder's is read as far as it goes)."""
    records = []
    for test in _list(payload.get("tests", [])):
        if not isinstance(test, dict):
            raise ValueError("a test is not a JSON object")
        extra = test.get("extra_data") if isinstance(test.get("extra_data"), dict) else {}
        earned, possible = test.get("score", 0), test.get("max_score", 0)
        status = extra.get("grader_status")
        if status not in STATUSES:
            if test.get("status") in ("passed", "failed"):
                status = test["status"]
            elif possible == 0:
                status = SKIPPED
            else:
                status = PASSED if earned == possible else FAILED
        output = test.get("output", "")
        record = Record(
            stage=extra.get("stage", ""),
            check_id=extra.get("check_id", test.get("name", "")),
            title=test.get("name", ""),
            points_earned=earned,
            points_possible=possible,
            status=status,
            message="" if output == "Passed." else output,
            visibility="public" if test.get("visibility") == "visible" else "hidden",
            duration=0.0,
        )
        _check_record(record)
        records.append(record)
    # exporters.summary puts a note (why the submission was not graded) before the score line.
    output = payload.get("output", "")
    note = output.split("\n\nScore: ")[0] if isinstance(output, str) and "\n\nScore: " in output else ""
    return LearnerResult(name, records, note)


def _list(value) -> list:
    if not isinstance(value, list):
        raise ValueError("records are not a list")
    return value


# --- what the class did ----------------------------------------------------------------

def first_sentence(message: str, limit: int = 200) -> str:
    line = (message.strip().splitlines() or [""])[0]
    match = re.match(r"(.+?[.!?])(\s|$)", line)
    text = match.group(1) if match else line
    return text if len(text) <= limit else text[: limit - 3] + "..."


def known_bugs(stages: Iterable[str]) -> dict[str, list]:
    """Each stage's mutants, by stage id; none for a stage the course does not know, or in a
    student release (which has no mutants)."""
    try:
        from ..mutants import load_mutants

        course = load_course()
    except (ImportError, CourseError):
        return {}
    found = {}
    for stage_id in stages:
        try:
            found[stage_id] = load_mutants(course.stage(stage_id))
        except CourseError:
            found[stage_id] = []
    return found


def problems_of_the_class(results: list[LearnerResult], bugs: dict[str, list]) -> list[Problem]:
    """What the learners graded to the end got wrong, most frequent first; each learner counts once."""
    by_key: dict[tuple, Problem] = {}
    for result in results:
        if not result.graded:
            continue
        failing = [r for r in result.records if r.status in (FAILED, ERROR)]
        if not failing:
            continue
        key, problem = first_problem(failing, bugs)
        by_key.setdefault(key, problem).learners.append(result.learner)
    return sorted(by_key.values(), key=lambda p: (-len(p.learners), not p.known_bug, p.label))


def first_problem(failing: list[Record], bugs: dict[str, list]) -> tuple[tuple, Problem]:
    """The known bug that the first failing check naming one names, or else the first failing
    message's first sentence; with its key, the same for every learner with that problem.

    Only the first: a bug makes later checks fail too, and their messages often list every
    usual cause ("check that ... and that gradients reach the table"), which would count the
    learner under bugs they do not have. For the same reason, when one message holds the
    phrases of several bugs, the one it names first is taken.
    """
    for r in failing:
        text = r.message.lower()
        named = [m for m in bugs.get(r.stage, []) if m.caught_by == r.check_id and m.message.lower() in text]
        if named:
            mutant = min(named, key=lambda m: text.index(m.message.lower()))
            # Two mutants that make the same edit are one bug, caught by two checks.
            key = ("bug", r.stage, mutant.file, mutant.find, mutant.replace, mutant.more_edits)
            return key, Problem(mutant.bug, mutant.name, r.title)
    first = failing[0]
    label = first_sentence(first.message) or f"{first.title}: {first.status}, no message"
    # The same sentence with another learner's numbers in it is the same problem.
    return ("message", re.sub(r"\d+(\.\d+)?", "#", label).lower()), Problem(label)


@dataclass
class CheckRate:
    stage: str
    check_id: str
    title: str
    points: float
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))

    @property
    def counted(self) -> int:
        return self.counts[PASSED] + self.counts[FAILED] + self.counts[ERROR]

    @property
    def rate(self) -> float | None:
        return self.counts[PASSED] / self.counted if self.counted else None


def pass_rates(results: list[LearnerResult]) -> list[CheckRate]:
    """Each check's results over the learners graded to the end, in the suites' order."""
    rates: dict[tuple[str, str], CheckRate] = {}
    for result in results:
        for r in result.records:
            rate = rates.setdefault((r.stage, r.check_id), CheckRate(r.stage, r.check_id, r.title, r.points_possible))
            if result.graded:
                rate.counts[r.status] += 1
    return list(rates.values())


@dataclass
class Scores:
    values: list[float]  # points, or percent of each learner's maximum when the maxima differ
    unit: str  # "points" or "%"
    maximum: float

    @property
    def summary(self) -> dict[str, float]:
        v = self.values
        return {"mean": statistics.fmean(v), "median": statistics.median(v), "min": min(v), "max": max(v)} if v else {}


def scores_of(results: list[LearnerResult]) -> Scores:
    maxima = {r.score[1] for r in results}
    if len(maxima) <= 1:
        return Scores([r.score[0] for r in results], "points", next(iter(maxima), 0.0))
    return Scores([100 * e / m if m else 0.0 for e, m in (r.score for r in results)], "%", 100.0)


# --- plots ---------------------------------------------------------------------------

def render_plots(results: list[LearnerResult]) -> dict[str, bytes]:
    """PNG bytes for each of PLOTS that has data; raises ImportError without matplotlib."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, safe beside other threads

    plots = {}
    scores = scores_of(results)
    # Titles come from records: `$` must stay a dollar sign, never start mathtext.
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False, "font.size": 10}):
        if scores.values:
            fig = Figure(figsize=(7, 3.2), layout="constrained")
            ax = fig.add_subplot()
            top = scores.maximum or max(scores.values) or 1
            if scores.unit == "points" and top <= 60 and float(top).is_integer():
                edges = [i - 0.5 for i in range(int(top) + 2)]
            else:
                edges = [top * i / 20 for i in range(21)]
            ax.hist(scores.values, bins=edges, color="#4c72b0", edgecolor="white")
            summary = scores.summary
            ax.axvline(summary["mean"], color="#dd8452", linestyle="--", label=f"mean {summary['mean']:.3g}")
            ax.axvline(summary["median"], color="#55a868", linestyle=":", label=f"median {summary['median']:.3g}")
            ax.set_xlabel(f"score ({scores.unit}, out of {scores.maximum:g})")
            ax.set_ylabel("learners")
            ax.yaxis.get_major_locator().set_params(integer=True)
            ax.legend(frameon=False)
            ax.set_title(f"Scores of {len(scores.values)} learners")
            plots["scores"] = _png(fig)
        rates = [c for c in pass_rates(results) if c.rate is not None]
        if rates:
            fig = Figure(figsize=(8, 0.9 + 0.32 * len(rates)), layout="constrained")
            ax = fig.add_subplot()
            labels = [c.title if len(c.title) <= 70 else c.title[:67] + "..." for c in rates]
            positions = range(len(rates))
            ax.barh(positions, [100 * c.rate for c in rates], color="#4c72b0")
            ax.set_yticks(list(positions), labels)
            ax.invert_yaxis()
            ax.set_xlim(0, 100)
            ax.set_xlabel("learners who passed (%)")
            ax.set_title("Pass rate of each check")
            plots["pass_rates"] = _png(fig)
    return plots


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


# --- the page ------------------------------------------------------------------------

def e(value) -> str:
    """Text for the page: every learner-made string goes through here."""
    return html.escape(str(value), quote=True)


def _clip(text: str) -> str:
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS] + " [...]"


def _num(x: float) -> str:
    return f"{x:.3g}" if not float(x).is_integer() else f"{x:g}"


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1000px;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { font-size: 1.25rem; margin-top: 2.2rem;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; }
.lead { color: #555; margin-top: 0; }
table { border-collapse: collapse; width: 100%; margin: 0.6rem 0; font-size: 0.92rem; }
th, td { text-align: left; padding: 0.3rem 0.5rem; border-bottom: 1px solid #eee; vertical-align: top; }
th { background: #f5f5f5; } td.n, th.n { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
.stats td { font-size: 1.1rem; }
td.rate { white-space: nowrap; }
.bar { background: #e8edf5; width: 8rem; height: 0.8rem; display: inline-block; vertical-align: middle; }
.bar span { background: #4c72b0; height: 100%; display: block; }
.name, pre { overflow-wrap: anywhere; word-break: break-word; }
pre { white-space: pre-wrap; margin: 0; font-size: 0.85rem; font-family: ui-monospace, Menlo, Consolas, monospace; }
code { font-size: 0.85rem; } .muted { color: #666; font-size: 0.88rem; }
img { max-width: 100%; height: auto; } .note { background: #fff8e1; padding: 0.5rem 0.8rem; border-left: 4px solid #f0b400; }
details summary { cursor: pointer; color: #335; }
"""


def build_html(results: list[LearnerResult], plots: dict[str, bytes] | None, source: str,
               unread: Iterable[str] = (), no_plots: str = "") -> str:
    """The report page. `plots` as render_plots returns them, or None with `no_plots` saying why."""
    stages = sorted({r.stage for res in results for r in res.records if r.stage})
    graded = [r for r in results if r.graded]
    not_graded = [r for r in results if not r.graded]
    scores = scores_of(results)
    title = f"Class report: {', '.join(stages) or 'no stage'}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{e(CONTENT_SECURITY_POLICY)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f'<p class="lead">{len(results)} learners: {len(graded)} graded to the end, {len(not_graded)} not graded. '
        f"From {e(source)}.</p>",
    ]
    if len(stages) > 1:
        parts.append('<p class="note">These results are for several stages; scores are shown as a percentage of '
                     "each learner's maximum.</p>")
    if plots is None:
        parts.append(f'<p class="note">No plots: {e(no_plots)}</p>')
    parts += _scores_section(scores, plots)
    parts += _checks_section(pass_rates(results), len(graded), plots)
    parts += _problems_section(problems_of_the_class(results, known_bugs(stages)), len(graded))
    parts += _not_graded_section(not_graded)
    parts += _learners_section(results)
    if unread:
        parts.append("<h2>Files not read</h2><ul>")
        parts += [f"<li><pre>{e(_clip(p))}</pre></li>" for p in unread]
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _image(plots: dict[str, bytes] | None, name: str, alt: str) -> list[str]:
    if not plots or name not in plots:
        return []
    data = base64.b64encode(plots[name]).decode("ascii")
    return [f'<p><img src="data:image/png;base64,{data}" alt="{e(alt)}"></p>']


def _scores_section(scores: Scores, plots) -> list[str]:
    parts = ["<h2>Scores</h2>"]
    if not scores.values:
        return parts + ["<p>No learner's results.</p>"]
    unit = "" if scores.unit == "points" else "%"
    cells = "".join(f'<td class="n">{_num(v)}{unit}</td>' for v in scores.summary.values())
    parts += [
        f'<table class="stats"><tr><th class="n">learners</th><th class="n">mean</th><th class="n">median</th>'
        f'<th class="n">min</th><th class="n">max</th><th class="n">out of</th></tr>'
        f'<tr><td class="n">{len(scores.values)}</td>{cells}<td class="n">{_num(scores.maximum)}{unit}</td></tr></table>',
        '<p class="muted">Every learner counts, those not graded with the score they have (usually 0). '
        "Checks skipped here (a GPU check without a GPU) count for nothing either way.</p>",
    ]
    return parts + _image(plots, "scores", "Histogram of the learners' scores")


def _checks_section(rates: list[CheckRate], graded: int, plots) -> list[str]:
    parts = ["<h2>Pass rate of each check</h2>",
             f'<p class="muted">Over the {graded} learners graded to the end. A check fails when it ran and '
             "found a problem; it is an error when the learner's code could not run it (a crash, a stub).</p>"]
    if not rates:
        return parts + ["<p>No checks.</p>"]
    parts += _image(plots, "pass_rates", "Bar chart of each check's pass rate")
    parts.append('<table><tr><th>check</th><th class="n">points</th><th class="n">passed</th><th>pass rate</th>'
                 '<th class="n">failed</th><th class="n">error</th><th class="n">skipped</th></tr>')
    for c in rates:
        if c.rate is None:
            rate = '<td class="muted">not run</td>'
        else:
            rate = (f'<td class="rate"><span class="bar"><span style="width:{100 * c.rate:.0f}%"></span></span> '
                    f"{100 * c.rate:.0f}%</td>")
        parts.append(
            f'<tr><td>{e(c.title)}<br><code class="muted">{e(c.check_id)}</code></td><td class="n">{_num(c.points)}</td>'
            f'<td class="n">{c.counts[PASSED]} of {c.counted}</td>{rate}<td class="n">{c.counts[FAILED]}</td>'
            f'<td class="n">{c.counts[ERROR]}</td><td class="n">{c.counts[SKIPPED]}</td></tr>'
        )
    return parts + ["</table>"]


def _problems_section(problems: list[Problem], graded: int) -> list[str]:
    parts = ["<h2>Most frequent bugs</h2>",
             '<p class="muted">Each learner who lost points counts once: under the known bug named by the first '
             "of their failing checks that names one, or else under the first sentence of their first failing "
             "check's message. A learner with two bugs counts under the first.</p>"]
    if not problems:
        return parts + ["<p>None: every learner graded to the end passed every check that ran.</p>"]
    parts.append('<table><tr><th class="n">learners</th><th>bug</th><th>who</th></tr>')
    for p in problems[:TOP_BUGS]:
        if p.known_bug:
            what = (f"{e(p.label[:1].upper() + p.label[1:])}<br><span class=\"muted\">known bug <code>{e(p.known_bug)}"
                    f"</code>, named by the check &ldquo;{e(p.found_by)}&rdquo;</span>")
        else:
            what = f'<pre>{e(p.label)}</pre><span class="muted">first failing message</span>'
        share = f"{len(p.learners)} of {graded}"
        names = ", ".join(e(n) for n in p.learners)
        parts.append(f'<tr><td class="n">{share}</td><td>{what}</td>'
                     f'<td><details><summary>{len(p.learners)} learner(s)</summary><span class="name">{names}</span>'
                     "</details></td></tr>")
    parts.append("</table>")
    if len(problems) > TOP_BUGS:
        parts.append(f'<p class="muted">{len(problems) - TOP_BUGS} less frequent ones are not shown.</p>')
    return parts


def _not_graded_section(not_graded: list[LearnerResult]) -> list[str]:
    parts = ["<h2>Not graded</h2>"]
    if not not_graded:
        return parts + ["<p>Every learner was graded to the end.</p>"]
    parts.append(f"<p>{len(not_graded)} learner(s) could not be graded to the end; each gets 0 points for the "
                 "checks that could not run, and this reason:</p>")
    parts.append("<table><tr><th>learner</th><th>why</th></tr>")
    parts += [f'<tr><td class="name">{e(r.learner)}</td><td><pre>{e(_clip(r.note))}</pre></td></tr>' for r in not_graded]
    return parts + ["</table>"]


def _learners_section(results: list[LearnerResult]) -> list[str]:
    from .exporters import reason

    parts = ["<h2>Every learner</h2>", '<table><tr><th>learner</th><th class="n">score</th>'
             '<th class="n">checks passed</th><th>why this score</th></tr>']
    for r in results:
        earned, possible = r.score
        passed = sum(x.status == PASSED for x in r.records)
        counted = sum(x.counts for x in r.records)
        parts.append(f'<tr><td class="name">{e(r.learner)}</td><td class="n">{_num(earned)} / {_num(possible)}</td>'
                     f'<td class="n">{passed} of {counted}</td><td><pre>{e(_clip(reason(r.records, r.note)))}</pre></td></tr>')
    return parts + ["</table>"]


# --- writing it ----------------------------------------------------------------------

def plots_folder(html_path: Path) -> Path:
    """Where the PNG plots go: beside the page, in a folder named after it (report.html: report/)."""
    return html_path.with_name(html_path.stem)


def write_report(results: list[LearnerResult], html_path: Path, source: str, unread: Iterable[str] = ()) -> Path:
    """Write the page and its PNG plots; returns the page's path."""
    from .exporters import _atomic

    try:
        plots, no_plots = render_plots(results), ""
    except ImportError as exc:
        plots, no_plots = None, (f"the plots need matplotlib ({exc.name or 'it'} is missing); install the course's "
                                 "`train` extra (`python course.py setup --instructor`) and build the report again.")
    if plots:
        folder = plots_folder(html_path)
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in plots.items():
            (folder / f"{name}.png").write_bytes(data)
    with _atomic(html_path) as f:
        f.write(build_html(results, plots, source, unread, no_plots))
    return html_path


def write_for_grade(out: Path, outcomes) -> str:
    """grade's report (OUT/report.html) of the learners it just graded; returns what grade prints.

    The grades are written before it: a report that fails says so and costs nothing else."""
    path = Path(out) / "report.html"
    try:
        return str(write_report(from_outcomes(outcomes), path, f"grading {intake.shown(str(Path(out).resolve()))}"))
    except Exception as exc:  # noqa: BLE001 - scores.csv and the records are written; only the report is missing
        return f"not written ({type(exc).__name__}: {exc}); run `python -m grader report {Path(out) / 'records'}` to try again"


def command(args) -> int:
    """`python -m grader report RECORDS_FOLDER [--out FILE]`."""
    folder = Path(args.records)
    results, unread = read_folder(folder)
    if not results:
        raise CourseError(f"No learner's results in {folder}: give grade's OUT/records folder, or a folder with one "
                          "folder per learner holding Gradescope's results.json.")
    # Beside the records, as grade writes it: in grade's output folder, when given that folder.
    out = args.out or (folder if (folder / "records").is_dir() else folder.resolve().parent) / "report.html"
    write_report(results, out, intake.shown(str(folder.resolve())), unread)
    print(f"Class report of {len(results)} learners: {out}")
    if unread:
        print(f"{len(unread)} file(s) could not be read; the report lists them.")
    return 0
