"""The CLI as a learner meets it: clear messages, honest exit codes, no tracebacks, no writes."""
import json
import shutil

from conftest import ROOT


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def copy_stage(tmp_path, stage, source="solutions"):
    target = tmp_path / "submission" / stage
    shutil.copytree(ROOT / source / stage, target)
    return target


def course_with_10_unavailable(root):
    """A copy of this course in which 10_llama is not written yet."""
    shutil.copytree(ROOT / "grader", root / "grader", ignore=shutil.ignore_patterns("__pycache__"))
    for folder in ("solutions", "exercises", "datasets"):
        (root / folder).symlink_to(ROOT / folder)
    toml = (ROOT / "course.toml").read_text()
    head, llama = toml.split('id = "10_llama"')
    (root / "course.toml").write_text(head + 'id = "10_llama"' + llama.replace("available = true", "available = false"))
    return root


def test_list_shows_every_stage(grader, tmp_path):
    out = grader("list")
    assert out.returncode == 0
    for stage in ("01_bpe", "05_attention", "10_llama"):
        assert stage in out.stdout
    out = grader("list", cwd=course_with_10_unavailable(tmp_path))
    (line,) = [line for line in out.stdout.splitlines() if "10_llama" in line]
    assert "not available yet" in line


def test_unknown_stage_suggests_the_right_id(grader):
    out = grader("check", "2_bigram")
    assert out.returncode == 2
    assert "Did you mean 02_bigram?" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_stage_not_available_yet(grader, tmp_path):
    out = grader("check", "10_llama", cwd=course_with_10_unavailable(tmp_path))
    assert out.returncode == 2
    assert "not available yet" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_missing_path(grader, tmp_path):
    out = grader("check", "02_bigram", "--impl", str(tmp_path / "nowhere"))
    assert out.returncode == 2
    assert "no such folder" in out.stderr
    assert "Traceback" not in out.stderr


def test_reference_earns_every_point_and_writes_json(grader, tmp_path):
    out = grader("check", "02_bigram", "--impl", "solutions", "--json", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stdout
    payload = json.loads((tmp_path / "r.json").read_text())
    assert payload["score"] == payload["max_score"] == 24
    fields = {"stage", "check_id", "title", "points_earned", "points_possible", "status", "message", "visibility", "duration"}
    assert all(set(r) == fields for r in payload["records"])
    assert {r["visibility"] for r in payload["records"]} == {"public", "hidden"}


def test_stubs_score_zero_with_guidance(grader):
    out = grader("check", "02_bigram")
    assert out.returncode == 1
    assert "Score: 0/24" in out.stdout
    assert "Not implemented yet: bigram_counts (bigram.py, line" in out.stdout
    assert "Still to implement (9): build_vocab, encode, decode, bigram_counts" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_syntax_error_is_one_paragraph(grader, tmp_path):
    stage = copy_stage(tmp_path, "02_bigram")
    (stage / "bigram.py").write_text((stage / "bigram.py").read_text() + "\ndef broken(:\n    pass\n")
    out = grader("check", "02_bigram", "--impl", str(stage.parent))
    assert out.returncode == 1
    assert "bigram.py has a syntax error on line" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_file_that_raises_at_import(grader, tmp_path):
    stage = copy_stage(tmp_path, "02_bigram")
    (stage / "bigram.py").write_text("import torch\nraise RuntimeError('boom')\n")
    out = grader("check", "02_bigram", "--impl", str(stage.parent))
    assert out.returncode == 1
    assert "Importing your code failed: RuntimeError: boom (bigram.py, line 2" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_learner_exception_names_their_line(grader, tmp_path):
    stage = copy_stage(tmp_path, "02_bigram")
    source = (stage / "bigram.py").read_text()
    (stage / "bigram.py").write_text(source.replace("return sorted(set(text))", "return sorted(set(text))[10**9]"))
    out = grader("check", "02_bigram", "--impl", str(stage.parent))
    assert out.returncode == 1
    assert "Your code raised IndexError" in out.stdout
    assert "bigram.py, line" in out.stdout


def test_forbidden_api_voids_the_stage(grader, tmp_path):
    stage = copy_stage(tmp_path, "01_bpe")
    (stage / "bpe.py").write_text("import tiktoken as t\n" + (stage / "bpe.py").read_text())
    out = grader("check", "01_bpe", "--impl", str(stage.parent))
    assert out.returncode == 1
    assert "forbidden API (bpe.py line 1 uses tiktoken)" in out.stdout
    assert "Score: 0/" in out.stdout


def test_grader_never_writes_into_learner_files(grader, tmp_path):
    stage = copy_stage(tmp_path, "02_bigram")
    before = snapshot(stage.parent)
    assert grader("check", "02_bigram", "--impl", str(stage.parent)).returncode == 0
    assert snapshot(stage.parent) == before


def test_same_code_same_score(grader, tmp_path):
    stage = copy_stage(tmp_path, "02_bigram")
    source = (stage / "bigram.py").read_text()
    # A partly wrong submission: its failing examples must be the same on every run.
    (stage / "bigram.py").write_text(source.replace("smoothed = counts.float() + smoothing", "smoothed = counts.float() + 0.5"))
    runs = []
    for i in range(2):
        grader("check", "02_bigram", "--impl", str(stage.parent), "--json", str(tmp_path / f"{i}.json"))
        records = json.loads((tmp_path / f"{i}.json").read_text())["records"]
        runs.append([{k: v for k, v in r.items() if k != "duration"} for r in records])
    assert runs[0] == runs[1]
    assert any(r["status"] == "failed" for r in runs[0])
