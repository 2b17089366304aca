"""The adversarial zoo: submissions that try to cheat or break the grader, graded in isolated mode.

Each attack (tests/zoo/<name>/attack.py, see tests/zoo/README.md) replaces one function of
the reference bigram model. Expected, for every attack: the checks it attacks earn nothing,
with a message that says why; the honest checks of the same submission earn their points;
another learner's files and grade, the grader's files and the marker file are untouched;
nobody connected to the grader machine's port; and no process of the submission survives
its grading. Attacks that only a real sandbox can stop (reading the reference, writing or
deleting files, the network, signals) are skipped, loudly, where bubblewrap cannot run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT))

from grader.course import load_course  # noqa: E402
from grader.handle import resolve  # noqa: E402
from grader.results import PASSED  # noqa: E402
from grader.runner import run_stage  # noqa: E402
from grader.sandbox.jail import Limits, Sandbox, SandboxUnavailable  # noqa: E402
from grader.sandbox.remote import RemoteImplementation  # noqa: E402

ZOO = Path(__file__).resolve().parent / "zoo"
STAGE = "02_bigram"
POINTS = load_course().stage(STAGE).points
HONEST = ("vocab_round_trip", "generate_follows_last_token", "logits_match_reference")
DRAWN = "count_functions_match_reference_on_drawn_inputs"
COUNTS = ("counts_match", "count_model_matches_reference", DRAWN)
NLL = ("average_nll_matches", "count_model_matches_reference", DRAWN)
PROBS = ("probs_are_smoothed_rows", "count_model_matches_reference", DRAWN)
LIMIT = ("Took longer than", "CPU time", "processes or threads", "stopped", "limit")
LINKS_SAY = "is a link. Links are not accepted"
# The grader's files the attacks write to or delete. They are checked, never restored: other
# work may change them while the zoo runs, so the test looks only for what an attack would
# leave (a missing file, or the ZOO-PLANTED text that every write attack writes).
GUARDED = (
    "grader/runner.py",
    "grader/suites/02_bigram/public.py",
    "grader/suites/02_bigram/hidden.py",
    "grader/mutants/02_bigram.py",
    "solutions/02_bigram/bigram.py",
)


@dataclass(frozen=True)
class Attack:
    name: str
    attacked: tuple[str, ...]
    says: tuple[str, ...]  # one of these is in the message of the first attacked check
    honest: tuple[str, ...] = HONEST
    sandbox_only: bool = False  # only a real sandbox can stop it; dangerous to run without one
    cli: bool = False  # graded through `python -m grader check --isolate --json`, the whole stage
    limits: tuple = ()  # (course.toml key, value): tighter limits, so that endless attacks end soon


ATTACKS = [
    Attack("conftest_py", COUNTS, ("counts[",)),
    Attack("pytest_shadow", COUNTS, ("should be a torch.Tensor",)),
    Attack("sitecustomize", COUNTS, ("counts[",)),
    Attack("pytest_exit", COUNTS, ("raised Exit",)),
    Attack("os_exit", COUNTS, ("exit status 0",)),
    Attack("sys_exit", COUNTS, ("raised SystemExit",)),
    Attack("atexit_rewrite", COUNTS, ("counts[",), cli=True),
    Attack("eq_always_true", COUNTS, ("should be a torch.Tensor",)),
    Attack("patch_allclose", PROBS, ("row sums of bigram_probs", "bigram_probs(bigram_counts(text))")),
    Attack("patch_assert_close", ("average_nll_matches",), ("average_nll returned 0.0",)),
    Attack("read_reference", NLL, ("average_nll returned -1.0", "average_nll on the text is -1.0"), sandbox_only=True),
    Attack("import_reference", NLL, ("average_nll returned -1.0", "average_nll on the text is -1.0"), sandbox_only=True),
    Attack("read_hidden", COUNTS, ("counts[",), sandbox_only=True),
    Attack("import_hidden", COUNTS, ("counts[",), sandbox_only=True),
    Attack("fake_report", COUNTS, ("counts[",), cli=True),
    Attack("infinite_loop", COUNTS[:1], ("Took longer than", "CPU time"), limits=(("check_time_limit", 15), ("check_cpu_limit", 4))),
    Attack("hang", COUNTS[:1], ("Took longer than",), limits=(("check_time_limit", 8),)),
    Attack("alloc_50gb", COUNTS, ("ran out of memory",), limits=(("memory_limit", 2048),)),
    Attack("memory_creep", COUNTS, ("ran out of memory",), limits=(("memory_limit", 1024),)),
    Attack("fork_bomb", COUNTS, LIMIT, sandbox_only=True, limits=(("check_time_limit", 15), ("check_cpu_limit", 4))),
    Attack("fork_bomb_simple", COUNTS, ("processes or threads",), sandbox_only=True),
    Attack("write_outside", COUNTS, ("counts[",), sandbox_only=True),
    Attack("delete_files", COUNTS, ("counts[",), sandbox_only=True),
    Attack("network", COUNTS, ("counts[",), sandbox_only=True),
    Attack("forged_answer", COUNTS, ("not plain data",)),
    Attack("kill_parent", COUNTS, ("counts[", "stopped by", "exit status", "stopped answering"), sandbox_only=True),
    Attack("grader_probe_patch", ("training_matches_counts",), ("After 200 AdamW steps", "does not require grad"), honest=("counts_match", "vocab_round_trip")),
    Attack("stdout_flood", COUNTS, ("Printed more than",), limits=(("output_limit", 256),)),
    Attack("subclass_answer", COUNTS, ("counts[",)),
    Attack("numpy_answer", COUNTS, ("should be a torch.Tensor",)),
    Attack("patch_grader_in_child", COUNTS, ("counts[",)),
    Attack("thread_outlives", COUNTS, ("counts[", "processes or threads")),
    Attack("cuda_lie", COUNTS, ("counts[",)),
    Attack("huge_answer", COUNTS, ("ran out of memory", "over the limit"), limits=(("memory_limit", 2048),)),
    Attack("raise_rlimits", COUNTS, ("ran out of memory",), limits=(("memory_limit", 2048),)),
    Attack("ignore_signals", COUNTS[:1], ("Took longer than", "CPU time"), limits=(("check_time_limit", 15), ("check_cpu_limit", 4))),
    Attack("raw_fd_flood", COUNTS, ("Printed more than",), limits=(("output_limit", 256),)),
    # A helper module that links to the reference: intake refuses the whole submission.
    Attack("symlink_reference", (*COUNTS, *HONEST), (LINKS_SAY,), honest=()),
]


# Intake attacks (tests/zoo/<name>/make.py builds the learner's folder): links, and files
# that are not what they seem. Each learner is refused with a message that says why.
LINKS = "Links are not accepted"
INTAKE_ATTACKS = {
    "link_stage_file_to_solutions": LINKS,
    "link_stage_folder_to_classmate": LINKS,
    "link_helper_outside": LINKS,
    "link_learner_folder": LINKS,
    "link_into_proc": LINKS,
    "fifo_stage_file": "is a named pipe",
    "fifo_beside": "is a named pipe",
    "non_utf8_name": "is not valid UTF-8",
    "deep_tree": "folders deep",
    "many_files": "holds more than",
}
# Kernel attacks: files handed in through nbgrader, graded by tests/test_nbgrader.py.
KERNEL_ATTACKS = ("kernel_launcher_forges", "kernel_launcher_plants_reference", "kernel_grader_shadow")
# Trust attacks: code that is slow or wrong, with a trick that would make a grader trusting the
# learner's process believe otherwise: a forged probe answer, forged clocks, remembered answers.
# tests/zoo/<name>/attack.py holds the code, then the trick between TRICK and END_OF_TRICK.
# name -> (stage, the stage file it is appended to, the checks it attacks)
TRICK, END_OF_TRICK = "# --- trick ---\n", "# --- end of trick ---\n"
TRUST_ATTACKS = {
    "probe_item_02": ("02_bigram", "bigram.py", ("training_matches_counts",)),
    "probe_function_mode_04": ("04_softmax", "softmax.py", ("no_loop_over_positions", "vectorized_speed")),
    "probe_get_parameter_08": ("08_gpt2", "gpt2.py", ("weight_tying",)),
    "probe_optimizer_08": ("08_gpt2", "gpt2.py", ("optimizer_groups_split",)),
    "probe_attention_calls_09": ("09_speedups", "train.py", ("sdpa_called_with_is_causal",)),
    "probe_autocast_09": ("09_speedups", "train.py", ("autocast_forward_only",)),
    "probe_recorded_grads_09": ("09_speedups", "train.py", ("accumulation_equals_big_batch",)),
    "probe_gradient_05": ("05_attention", "attention.py", ("gradients_reach",)),
    "probe_gradient_map_05": ("05_attention", "attention.py", ("gradient_causal",)),
    "probe_gradient_07": ("07_layernorm", "gpt.py", ("gpt_gradients_reach",)),
    "clock_04": ("04_softmax", "softmax.py", ("no_loop_over_positions", "vectorized_speed")),
    "clock_05": ("05_attention", "attention.py", ("speed",)),
    "clock_10": ("10_llama", "llama.py", ("cache_speed_cpu",)),
    "clock_slow_uncached_10": ("10_llama", "llama.py", ("cache_speed_cpu",)),
    "memo_speed_04": ("04_softmax", "softmax.py", ("no_loop_over_positions", "vectorized_speed")),
    "memo_speed_05": ("05_attention", "attention.py", ("speed",)),
    "memo_speed_10": ("10_llama", "llama.py", ("cache_speed_cpu",)),
}


def test_the_zoo_is_complete():
    folders = sorted(p.name for p in ZOO.iterdir() if p.is_dir())
    assert folders == sorted([a.name for a in ATTACKS] + list(INTAKE_ATTACKS) + list(KERNEL_ATTACKS) + list(TRUST_ATTACKS))
    assert len(ATTACKS) >= 20 and len(folders) >= 60
    for name in INTAKE_ATTACKS:
        assert (ZOO / name / "make.py").is_file(), name
    for name in KERNEL_ATTACKS:
        assert (ZOO / name / "files").is_dir(), name
    for name in TRUST_ATTACKS:
        assert (ZOO / name / "attack.py").read_text().count(TRICK) == 1, name
    classes = ("probe_", "clock_", "memo_speed_")
    assert all(sum(name.startswith(c) for name in TRUST_ATTACKS) >= 3 for c in classes)


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def course():
    return load_course()


@pytest.fixture(scope="module")
def stage(course):
    return course.stage(STAGE)


@pytest.fixture(scope="module")
def sandboxed(course, stage):
    """Whether this machine runs learner code in a real sandbox (bubblewrap)."""
    try:
        box = Sandbox(stage.id, [], Limits.for_stage(stage), course.root)
    except SandboxUnavailable:
        return False
    try:
        return box.mode == "bwrap"
    finally:
        box.close()


@pytest.fixture(scope="module")
def victim(tmp_path_factory):
    """Another learner, honest, whose files and grade no attack may change."""
    root = tmp_path_factory.mktemp("victim")
    shutil.copytree(ROOT / "solutions" / STAGE, root / STAGE)
    return root


@pytest.fixture
def listener():
    """A TCP port on this machine that records every connection and what was sent."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    seen: list[bytes] = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    seen.append(conn.recv(4096))
                except OSError:
                    seen.append(b"")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], seen
    stop.set()
    thread.join(2)
    server.close()


def digest(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def build(attack: Attack, where: Path, victim: Path, port: int) -> tuple[Path, Path, Path]:
    """The submission: the reference with the attack appended, its extra files, its links."""
    folder = where / "learner" / STAGE
    folder.mkdir(parents=True)
    marker = where / "marker"
    results = where / "results.json"
    values = {
        "@@REPO@@": str(ROOT),
        "@@VICTIM@@": str(victim),
        "@@ORIGINAL@@": str(folder),
        "@@MARKER@@": str(marker),
        "@@RESULTS@@": str(results),
        "@@PORT@@": str(port),
    }

    def fill(text: str) -> str:
        for key, value in values.items():
            text = text.replace(key, value)
        return text

    source = (ROOT / "solutions" / STAGE / "bigram.py").read_text()
    attack_code = fill((ZOO / attack.name / "attack.py").read_text())
    (folder / "bigram.py").write_text(f"{source}\n\n# --- the attack ({attack.name}) ---\n{attack_code}")
    extra = ZOO / attack.name / "files"
    if extra.is_dir():
        for path in extra.iterdir():
            (folder / path.name).write_text(fill(path.read_text()))
    if attack.name == "symlink_reference":
        (folder / "ref_link.py").symlink_to(ROOT / "solutions" / STAGE / "bigram.py")
    return folder, marker, results


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if text.encode() in cmdline:
                found.append(int(entry))
    return found


# --- the zoo ----------------------------------------------------------------------------------


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack(attack, course, stage, sandboxed, victim, listener, tmp_path):
    if attack.sandbox_only and not sandboxed:
        pytest.skip("needs a real sandbox (bubblewrap), which this machine cannot run: without one this attack would succeed")
    port, connections = listener
    victim_before = digest(victim)
    folder, marker, results = build(attack, tmp_path, victim, port)
    original_before = digest(folder)
    try:
        if attack.cli:
            records, stdout = grade_with_cli(folder, results)
            assert "Score: 24/24" not in stdout, "the learner's fake report reached the grader's output"
            assert "isolated" in stdout.splitlines()[0]
            time.sleep(1.0)  # anything left behind would rewrite the results now
            assert read_records(results) == records, "the results file changed after grading"
            honest = [c for c in records if c not in attack.attacked]
        else:
            records, leftovers = grade_with_api(course, dataclasses.replace(stage, **dict(attack.limits)), folder, attack)
            assert not leftovers, f"processes of the submission outlived its grading: {leftovers}"
            honest = list(attack.honest)
        for check_id in attack.attacked:
            record = records[check_id]
            assert record["points_earned"] == 0, f"{attack.name} earned points on {check_id}: {record['message']}"
            assert record["status"] != PASSED
        first = records[attack.attacked[0]]["message"]
        assert any(s in first for s in attack.says), f"{attack.attacked[0]}: unexpected message: {first}"
        for check_id in honest:
            record = records[check_id]
            assert record["status"] == PASSED, f"honest check {check_id} did not pass after {attack.name}: {record['message']}"
        assert not marker.exists(), "the attack created a file on the grader's machine"
        assert not connections, f"the attack reached the grader machine's network: {connections}"
        assert digest(victim) == victim_before, "another learner's files changed"
        assert digest(folder) == original_before, "the learner's original folder changed"
    finally:
        damaged = [name for name in GUARDED if not (ROOT / name).is_file() or b"ZOO-PLANTED" in (ROOT / name).read_bytes()]
    assert not damaged, f"the attack changed the grader's files: {damaged} (git checkout restores them)"


def grade_with_api(course, stage, folder: Path, attack: Attack):
    """Grade the attacked checks, then the honest ones, with one isolated implementation."""
    impl = RemoteImplementation(resolve(course, stage, str(folder.parent), "reference"), course)
    marker = str(impl.sandbox.root)
    records = {}
    try:
        assert impl.isolation["mode"] in ("bwrap", "process")
        for check_id in (*attack.attacked, *attack.honest):
            for record in run_stage(course, stage, impl, only=check_id):
                records[record.check_id] = dataclasses.asdict(record)
    finally:
        impl.close()
    deadline = time.monotonic() + 5
    while processes_mentioning(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return records, processes_mentioning(marker)


def grade_with_cli(folder: Path, results: Path):
    done = subprocess.run(
        [sys.executable, "-m", "grader", "check", STAGE, "--impl", str(folder.parent), "--isolate", "--json", str(results)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    return read_records(results), done.stdout


def read_records(path: Path) -> dict:
    payload = json.loads(path.read_text())
    assert payload["max_score"] == POINTS
    return {r["check_id"]: r for r in payload["records"]}


def test_victim_grade_is_unchanged(course, victim):
    """After the whole zoo, the honest learner still earns every point, in isolated mode."""
    impl = RemoteImplementation(resolve(course, course.stage(STAGE), str(victim), "reference"), course)
    try:
        records = run_stage(course, course.stage(STAGE), impl)
    finally:
        impl.close()
    bad = [(r.check_id, r.message) for r in records if r.status != PASSED]
    assert not bad
    assert sum(r.points_earned for r in records) == POINTS


# --- intake attacks, in a batch ------------------------------------------------------------------


def test_intake_attacks_in_a_batch(course, stage, victim, tmp_path):
    """Every intake attack in one class with an honest learner and the stub, graded by `grade`
    (isolated): each attack earns no more than its code earns without the trick (it is
    refused: 0, with a message that says why), the honest learner earns every point, the stub
    none, the batch finishes and writes scores.csv, and a rerun keeps every learner."""
    import csv
    import importlib.util

    from grader.classgrading.batch import grade_class

    solution = (ROOT / "solutions" / STAGE / "bigram.py").read_text()
    stub = (ROOT / "exercises" / STAGE / "bigram.py").read_text()
    places = {"repo": ROOT, "victim": victim, "solution": solution, "stub": stub}
    submissions = tmp_path / "class"
    (submissions / "honest" / STAGE).mkdir(parents=True)
    (submissions / "honest" / STAGE / "bigram.py").write_text(solution)
    (submissions / "stub").mkdir()
    (submissions / "stub" / "bigram.py").write_text(stub)
    for name in INTAKE_ATTACKS:
        spec = importlib.util.spec_from_file_location(f"zoo_{name}", ZOO / name / "make.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.make(submissions / name, places)
    protected = {"victim": digest(victim), "solutions": digest(ROOT / "solutions" / STAGE)}

    started = time.monotonic()
    outcomes = {o.learner: o for o in grade_class(course, stage, submissions, tmp_path / "grades", workers=2)}
    assert set(outcomes) == {"honest", "stub", *INTAKE_ATTACKS}
    assert outcomes["honest"].score == (POINTS, POINTS), outcomes["honest"].note
    assert outcomes["stub"].score == (0, POINTS)
    for name, says in INTAKE_ATTACKS.items():
        outcome = outcomes[name]
        # Without its trick, an attack's code is the stub, nothing, or the honest code.
        assert outcome.score[0] <= outcomes["stub"].score[0], f"{name} earned {outcome.score}"
        assert says in outcome.note, f"{name}: {outcome.note}"
        assert {r.status for r in outcome.records} == {"error"} and all(says in r.message for r in outcome.records)
    assert {"victim": digest(victim), "solutions": digest(ROOT / "solutions" / STAGE)} == protected

    rows = {r["learner"]: r for r in csv.DictReader(open(tmp_path / "grades" / "scores.csv", encoding="utf-8"))}
    assert set(rows) == set(outcomes)
    assert all(rows[name]["note"] for name in rows), "every learner has a reason in scores.csv"
    assert rows["honest"]["score"] == f"{POINTS:g}" and rows["honest"]["note"] == "Every check passed."

    again = grade_class(course, stage, submissions, tmp_path / "grades", workers=2)
    assert all(o.kept for o in again), [o.learner for o in again if not o.kept]
    print(f"\nintake attacks in a batch: {time.monotonic() - started:.1f} s")


# --- trust attacks, in a batch per stage ---------------------------------------------------------


def without_trick(code: str) -> str:
    """The attack's code with its trick taken out: what the same learner earns honestly."""
    before, rest = code.split(TRICK)
    return before + rest.split(END_OF_TRICK, 1)[1]


@pytest.mark.parametrize("stage_id", sorted({stage for stage, _, _ in TRUST_ATTACKS.values()}))
def test_trust_attacks_in_a_batch(course, stage_id, tmp_path):
    """Each trust attack of a stage in one class with an honest learner, the stub and the same
    code without its trick, graded by `grade` (isolated): the trick earns nothing (the attacked
    checks fail, as they do without it), the attack earns no more than its code without the
    trick, the honest learner every point, the stub none, and the batch finishes."""
    from grader.classgrading.batch import grade_class

    stage = course.stage(stage_id)
    attacks = {name: (file, attacked) for name, (s, file, attacked) in TRUST_ATTACKS.items() if s == stage_id}
    submissions = tmp_path / "class"
    for learner, source in (("honest", "solutions"), ("stub", "exercises")):
        shutil.copytree(ROOT / source / stage_id, submissions / learner / stage_id)
    for name, (file, _) in attacks.items():
        code = (ZOO / name / "attack.py").read_text()
        for learner, text in ((name, code), (f"{name}_without_trick", without_trick(code))):
            shutil.copytree(ROOT / "solutions" / stage_id, submissions / learner / stage_id)
            target = submissions / learner / stage_id / file
            target.write_text(f"{target.read_text()}\n\n# --- the attack ({name}) ---\n{text}")

    outcomes = {o.learner: o for o in grade_class(course, stage, submissions, tmp_path / "grades", workers=2)}
    full = outcomes["honest"].score[1]
    assert outcomes["honest"].score == (full, full), outcomes["honest"].note
    assert outcomes["stub"].score == (0, full)
    for name, (_, attacked) in attacks.items():
        attack, plain = outcomes[name], outcomes[f"{name}_without_trick"]
        records = {r.check_id: r for r in attack.records}
        for check_id in attacked:
            assert records[check_id].points_earned == 0, f"{name} earned points on {check_id}: {records[check_id].message}"
        assert attack.score[0] <= plain.score[0], f"{name} earned {attack.score}, its code without the trick {plain.score}"
        assert plain.score[0] < full, f"{name}: the code without its trick should lose points ({plain.note})"
