"""Isolated grading (`check --isolate`): the same suites, the same scores, learner code elsewhere.

For every stage that exists: the reference and the stubs get the same records (status,
points, message) in-process and in the sandboxed child, and so does a submission with a bug
in it. The time each mode took is printed side by side at the end (the checks alone; the
child's start is shown apart, as the CLI overlaps it with its own start). For the whole
command, in-process vs --isolate, run benchmarks/isolation.py.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT

sys.path.insert(0, str(ROOT))

from grader.course import load_course  # noqa: E402
from grader.handle import LearnerError, LoadError, resolve  # noqa: E402
from grader.mutants import load_mutants, write_mutant  # noqa: E402
from grader.runner import run_stage  # noqa: E402
from grader.sandbox import wire  # noqa: E402
from grader.sandbox.jail import SandboxFailure  # noqa: E402
from grader.sandbox.remote import RemoteImplementation  # noqa: E402

COURSE = load_course()
STAGES = [s.id for s in COURSE.stages if s.available]
TIMINGS: dict = {}


def outcome(records):
    return [(r.check_id, r.status, r.points_earned, r.message) for r in records]


def both_ways(stage_id: str, impl: str, deps: str = "reference"):
    stage = COURSE.stage(stage_id)
    start = time.perf_counter()
    local = run_stage(COURSE, stage, resolve(COURSE, stage, impl, deps))
    in_process = time.perf_counter() - start
    start = time.perf_counter()
    remote = RemoteImplementation(resolve(COURSE, stage, impl, deps), COURSE)
    try:
        try:  # the child's start (Python, torch), which the CLI overlaps with its own
            remote.load({name for s in COURSE.stages for name in s.module_names})
        except LoadError:
            pass
        child_start = time.perf_counter() - start
        start = time.perf_counter()
        isolated = run_stage(COURSE, stage, remote)
        checks = time.perf_counter() - start
    finally:
        remote.close()
    TIMINGS[(stage_id, impl if impl in ("solutions", "exercises") else "submission")] = (in_process, checks, child_start)
    return local, isolated


@pytest.mark.parametrize("stage_id", STAGES)
def test_reference_scores_the_same(stage_id):
    local, isolated = both_ways(stage_id, "solutions")
    assert outcome(isolated) == outcome(local)
    assert sum(r.points_earned for r in isolated) == sum(r.points_earned for r in local)


@pytest.mark.parametrize("stage_id", STAGES)
def test_stubs_score_the_same(stage_id):
    local, isolated = both_ways(stage_id, "exercises")
    assert outcome(isolated) == outcome(local)


def test_a_partly_wrong_submission_scores_the_same(tmp_path):
    stage = COURSE.stage("02_bigram")
    mutant = next(m for m in load_mutants(stage) if m.caught_by != "training_matches_counts")
    write_mutant(mutant, ROOT / "solutions" / stage.id, tmp_path / stage.id)
    local, isolated = both_ways(stage.id, str(tmp_path))
    assert [(r.check_id, r.status, r.points_earned) for r in isolated] == [(r.check_id, r.status, r.points_earned) for r in local]
    assert 0 < sum(r.points_earned for r in isolated) < stage.points


def test_without_a_sandbox_it_still_isolates_and_says_so(monkeypatch, capsys):
    monkeypatch.setenv("GRADER_SANDBOX", "process")
    stage = COURSE.stage("02_bigram")
    local = run_stage(COURSE, stage, resolve(COURSE, stage, "exercises", "reference"))
    remote = RemoteImplementation(resolve(COURSE, stage, "exercises", "reference"), COURSE)
    try:
        assert remote.isolation == {"mode": "process", "sandboxed": False, "reason": "GRADER_SANDBOX=process"}
        assert "NOT sandboxed" in remote.label
        isolated = run_stage(COURSE, stage, remote, only="counts_match")
    finally:
        remote.close()
    assert outcome(isolated) == [o for o in outcome(local) if o[0] == "counts_match"]
    assert "WARNING: learner code is NOT sandboxed" in capsys.readouterr().err


def test_cli_isolate_flag(grader, tmp_path):
    out = grader("check", "02_bigram", "--impl", "solutions", "--isolate", "--json", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "isolated" in out.stdout.splitlines()[0]
    payload = json.loads((tmp_path / "r.json").read_text())
    assert payload["score"] == payload["max_score"] == COURSE.stage("02_bigram").points


def test_handles_behave_like_in_process():
    """Exceptions keep their built-in class, objects come back as handles, data as plain data."""
    stage = COURSE.stage("01_bpe")
    remote = RemoteImplementation(resolve(COURSE, stage, "solutions", "reference"), COURSE)
    try:
        remote.load({s for st in COURSE.stages for s in st.module_names})
        remote.begin_check("handles", 60)
        bpe = remote.module("bpe")
        tok = bpe.Tokenizer()
        tok.train("hello hello world", 260, ["<|endoftext|>"])
        assert type(tok.merges) is dict and all(type(k) is tuple for k in tok.merges)
        assert type(tok.vocab[104]) is bytes
        assert tok.decode(tok.encode("hello")) == "hello"
        with pytest.raises(LearnerError) as raised:
            bpe.Tokenizer().train("abc", 256, ["<|endoftext|>"])
        assert isinstance(raised.value.original, ValueError)
        assert "bpe.py, line" in raised.value.describe()
        with pytest.raises(LearnerError, match="has no attribute 'nope'"):
            tok.nope
        with remote.temporary_directory() as shared:  # the suites' tmp_path: writable by the child
            tok.save(os.path.join(shared, "tok.json"))
            assert os.path.getsize(os.path.join(shared, "tok.json")) > 0
        remote.end_check()
    finally:
        remote.close()


@pytest.mark.parametrize("isolated", [False, True])
def test_a_probe_is_named_by_the_learners_object(isolated):
    """An error raised in learner code under a probe names the learner's object the grader called
    (attention.Head(...)), never the grader's helper (call_seeded), which the learner never saw."""
    from grader.probes import call_seeded

    stage = COURSE.stage("05_attention")
    impl = resolve(COURSE, stage, "solutions", "reference")
    impl = RemoteImplementation(impl, COURSE) if isolated else impl
    try:
        impl.load({s for st in COURSE.stages for s in st.module_names})
        if isolated:
            impl.begin_check("probe names", 60)
        head = impl.module("attention").Head(8, 4, 8)
        with pytest.raises(LearnerError) as raised:
            impl.probe(call_seeded, head, 0, torch.randn(2, 3, 5))  # 5 channels, the head wants 8
        assert raised.value.call == "attention.Head(...)"
        assert "call_seeded" not in raised.value.describe()
        if isolated:
            impl.end_check()
    finally:
        if isolated:
            impl.close()


def test_answers_are_never_unpickled():
    """What the child sends is JSON and raw numbers: a pickle is rejected, not run."""
    import pickle
    import struct

    class Boom:
        def __reduce__(self):
            return (os.system, ("false",))

    with pytest.raises(wire.Unreadable):
        wire.load_answer(pickle.dumps({"seq": 1, "ok": Boom()}))
    evil = pickle.dumps(Boom())
    with pytest.raises(wire.Unreadable):
        wire.load_answer(struct.pack(">I", len(evil)) + evil)
    body = {"seq": 1, "ok": {"~": "T", "i": 0, "dtype": "float32", "shape": [2, 3], "device": "cpu"}}
    with pytest.raises(wire.Unreadable):  # the data does not match the shape
        wire.tensor_from_blob(body["ok"], b"\0" * 5)
    node, blob = wire.tensor_blob(torch.arange(6.0).view(2, 3))
    assert torch.equal(wire.tensor_from_blob(node, blob), torch.arange(6.0).view(2, 3))


def test_a_missing_answer_is_a_failed_check(tmp_path):
    folder = tmp_path / "02_bigram"
    shutil.copytree(ROOT / "solutions" / "02_bigram", folder)
    with open(folder / "bigram.py", "a") as f:
        f.write("\n\ndef bigram_counts(ids, vocab_size):\n    import os\n    os._exit(0)\n")
    stage = COURSE.stage("02_bigram")
    remote = RemoteImplementation(resolve(COURSE, stage, str(tmp_path), "reference"), COURSE)
    try:
        records = run_stage(COURSE, stage, remote, only="counts_match")
        records += run_stage(COURSE, stage, remote, only="vocab_round_trip")
    finally:
        remote.close()
    assert [(r.status, r.points_earned) for r in records] == [("failed", 0), ("passed", 1)]
    assert "exit status 0" in records[0].message


def test_import_failures_are_load_errors(tmp_path):
    folder = tmp_path / "02_bigram"
    folder.mkdir()
    (folder / "bigram.py").write_text("import os\nos._exit(3)\n")
    stage = COURSE.stage("02_bigram")
    remote = RemoteImplementation(resolve(COURSE, stage, str(tmp_path), "reference"), COURSE)
    try:
        with pytest.raises(LoadError, match="exit status 3"):
            remote.load({"bigram"})
        records = run_stage(COURSE, stage, remote)
    finally:
        remote.close()
    assert all(r.status == "error" and r.points_earned == 0 for r in records)


def test_from_scratch_scan_follows_imports_in_isolated_mode(tmp_path):
    stage = next((s for s in COURSE.stages if s.available and s.forbidden and s.id != "01_bpe"), None)
    if stage is None:
        pytest.skip("no available stage forbids an API")
    module = stage.module_names[0]
    folder = tmp_path / stage.id
    shutil.copytree(ROOT / "solutions" / stage.id, folder)
    forbidden = stage.forbidden[0]
    (folder / "helper.py").write_text(f"import torch\n\nsneaky = {forbidden}\n")
    with open(folder / f"{module}.py", "a") as f:
        f.write("\nimport helper  # noqa\n")
    remote = RemoteImplementation(resolve(COURSE, stage, str(tmp_path), "reference"), COURSE)
    try:
        records = run_stage(COURSE, stage, remote)
    finally:
        remote.close()
    assert all(r.points_earned == 0 and "forbidden API" in r.message and "helper.py" in r.message for r in records)


def test_limits_fail_with_the_limit_and_by_how_much(tmp_path):
    import dataclasses

    folder = tmp_path / "02_bigram"
    shutil.copytree(ROOT / "solutions" / "02_bigram", folder)
    with open(folder / "bigram.py", "a") as f:
        f.write("\n\ndef bigram_counts(ids, vocab_size):\n    return torch.empty(10**12, dtype=torch.uint8)\n")
    stage = dataclasses.replace(COURSE.stage("02_bigram"), memory_limit=1024)
    remote = RemoteImplementation(resolve(COURSE, stage, str(tmp_path), "reference"), COURSE)
    try:
        remote.load({"bigram"})
        remote.begin_check("memory", 60)
        with pytest.raises(SandboxFailure) as raised:
            remote.module("bigram").bigram_counts(torch.tensor([1, 2]), 3)
    finally:
        remote.close()
    assert raised.value.limit == "memory"
    assert "931.3 GiB" in str(raised.value) and "1.0 GiB (memory_limit)" in str(raised.value)


def test_print_timings(capsys):
    """In-process vs isolated, side by side, for the runs above (see benchmarks/isolation.py)."""
    with capsys.disabled():
        print("\nrun_stage, side by side    in-process  isolated  ratio   (+ starting the child)")
        for (stage_id, impl), (local, isolated, child_start) in sorted(TIMINGS.items()):
            print(f"{stage_id:<13} {impl:<11} {local:9.2f}s {isolated:8.2f}s {isolated / max(local, 1e-3):6.2f}   (+{child_start:.1f}s)")


def test_the_child_sees_the_references_it_builds_on_and_not_its_own(tmp_path):
    """Graded against the references of earlier stages, the child can import them; the
    reference of the stage being graded, the hidden checks and the course folder stay out."""
    stage = COURSE.stage("07_layernorm")
    folder = tmp_path / stage.id
    shutil.copytree(ROOT / "solutions" / stage.id, folder)
    dep = COURSE.dependencies(stage)[0]
    with open(folder / stage.files[0], "a") as f:
        f.write(
            f"\n\nimport {dep.module_names[0]} as _dep  # at import time, as stage files import earlier stages\n\n\n"
            "def _peek(paths):\n    import os\n\n"
            "    return [os.path.exists(p) for p in paths], os.path.basename(os.path.dirname(_dep.__file__))\n"
        )
    remote = RemoteImplementation(resolve(COURSE, stage, str(tmp_path), "reference"), COURSE)
    try:
        if not remote.isolation["sandboxed"]:
            pytest.skip("needs bubblewrap")
        remote.load({name for s in COURSE.stages for name in s.module_names})
        remote.begin_check("peek", 60)
        seen, dep_folder = remote.module(stage.module_names[0])._peek([
            str(ROOT / "solutions" / stage.id / stage.files[0]),
            str(ROOT / "grader" / "suites" / stage.id / "hidden.py"),
            str(ROOT / "course.toml"),
            str(ROOT / "solutions" / dep.id / dep.files[0]),
        ])
    finally:
        remote.close()
    assert seen == [False, False, False, False]  # the reference it builds on is the copy, not the course's
    assert dep_folder == dep.id


def test_the_command_line_imports_no_torch_before_the_child_starts():
    """`check --isolate` starts the sandboxed child before torch loads, so that the child
    imports torch while the grader does: building the parser must not import it."""
    code = ("import sys\nfrom grader.cli import main\ntry:\n    main(['check', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stdout + done.stderr
