"""Intake (grader/intake.py): a learner's folder is hostile input. Links are never followed,
odd files never opened, the walk is bounded, and each oddity refuses the learner with a
message that says what to change. Fast: no learner code runs here."""
import os
import threading

import pytest

from conftest import ROOT
from grader import intake
from grader.course import load_course

STAGE = load_course().stage("02_bigram")
SOLUTION = ROOT / "solutions" / "02_bigram" / "bigram.py"


def refused(root) -> str:
    with pytest.raises(intake.Refused) as caught:
        intake.take(root, STAGE)
    return str(caught.value)


@pytest.mark.parametrize("layout", ["bigram.py", "02_bigram/bigram.py", "exercises/02_bigram/bigram.py", "zip/ada/bigram.py"])
def test_the_stage_folder_is_found_where_learners_put_it(tmp_path, layout):
    (tmp_path / layout).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / layout).write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("not code")
    taken = intake.take(tmp_path, STAGE)
    assert taken.folder == (tmp_path / layout).parent
    assert taken.files[0] == "bigram.py"


def test_links_are_refused_wherever_they_point(tmp_path):
    cases = {
        "stage_file": lambda r: (r / "bigram.py").symlink_to(SOLUTION),
        "stage_folder": lambda r: (r / "02_bigram").symlink_to(SOLUTION.parent),
        "folder_between": lambda r: ((r / "course").symlink_to(SOLUTION.parent.parent), (r / "notes.txt").touch()),
        "helper": lambda r: ((r / "bigram.py").write_text("x"), (r / "helper.py").symlink_to(SOLUTION)),
        "nested_helper": lambda r: ((r / "bigram.py").write_text("x"), (r / "pkg").mkdir(),
                                    (r / "pkg" / "util.py").symlink_to("/etc/hostname")),
        "dangling": lambda r: ((r / "bigram.py").write_text("x"), (r / "gone.py").symlink_to(r / "nowhere")),
    }
    for name, make in cases.items():
        root = tmp_path / name
        root.mkdir()
        make(root)
        message = refused(root)
        assert "is a link. Links are not accepted" in message, (name, message)
    # A link beside the learner's own stage folder is never followed, and does not matter.
    (tmp_path / "folder_between" / "02_bigram").mkdir()
    (tmp_path / "folder_between" / "02_bigram" / "bigram.py").write_text("x")
    assert intake.take(tmp_path / "folder_between", STAGE).folder.name == "02_bigram"


def test_a_learner_folder_that_is_a_link_is_refused(tmp_path):
    (tmp_path / "ada").mkdir()
    (tmp_path / "ada" / "bigram.py").write_text("x")
    (tmp_path / "eve").symlink_to(tmp_path / "ada")
    assert "eve is a link. Links are not accepted" in refused(tmp_path / "eve")


def test_odd_files_are_refused_without_being_opened(tmp_path):
    """A named pipe would block whoever opens it: the test fails by timing out if intake does."""
    pipe = tmp_path / "pipe"
    pipe.mkdir()
    os.mkfifo(pipe / "bigram.py")
    beside = tmp_path / "beside"
    beside.mkdir()
    (beside / "bigram.py").write_text("x")
    os.mkfifo(beside / "data.txt")
    result = {}
    worker = threading.Thread(target=lambda: result.update(pipe=refused(pipe), beside=refused(beside)), daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "intake opened a named pipe"
    assert "pipe/bigram.py is a named pipe" in result["pipe"]
    assert "beside/data.txt is a named pipe, not a file" in result["beside"]


def test_names_that_are_not_utf8_are_shown_escaped(tmp_path):
    (tmp_path / "bigram.py").write_text("x")
    with open(os.fsencode(tmp_path) + b"/caf\xe9.py", "w") as f:
        f.write("x")
    message = refused(tmp_path)
    assert "caf\\xe9.py is not valid UTF-8" in message
    message.encode("utf-8")  # printable and writable anywhere


def test_deep_and_large_trees_are_bounded(tmp_path, monkeypatch):
    deep = tmp_path / "deep"
    (deep / ("d/" * 12)).mkdir(parents=True)
    (deep / "bigram.py").write_text("x")
    assert f"more than {intake.TREE_DEPTH} folders deep" in refused(deep)

    many = tmp_path / "many"
    many.mkdir()
    (many / "bigram.py").write_text("x")
    monkeypatch.setattr(intake, "MAX_FILES", 50)
    for i in range(60):
        (many / f"{i}.txt").touch()
    assert "holds more than 50 files" in refused(many)

    monkeypatch.setattr(intake, "MAX_FILE_BYTES", 1000)
    big = tmp_path / "big"
    big.mkdir()
    (big / "bigram.py").write_text("x" * 2000)
    assert "larger than" in refused(big)
    (big / "bigram.py").write_text("x")
    (big / "weights.bin").write_bytes(b"0" * 2000)  # not code: left out, not refused
    taken = intake.take(big, STAGE)
    assert taken.files == ("bigram.py",) and taken.left_out[0].startswith("weights.bin")


def test_wrong_names_are_named(tmp_path):
    for handed_in in ("Bigram.py", "bigram (1).py", "BIGRAM.PY", "bigram.py.txt"):
        root = tmp_path / handed_in.replace(" ", "_")
        root.mkdir()
        (root / handed_in).write_text("x")
        assert f"Found {handed_in}; the file must be named bigram.py" in refused(root)


@pytest.mark.parametrize("folder", ["solutions/02_bigram", ".backup", "a/b/c/d/e"])
def test_a_file_in_a_folder_the_grader_does_not_search_is_named(tmp_path, folder):
    (tmp_path / folder).mkdir(parents=True)
    (tmp_path / folder / "bigram.py").write_text("x")
    message = refused(tmp_path)
    assert f"Found {folder}/bigram.py, in a folder the grader does not look in" in message


def test_two_copies_are_refused_and_both_named(tmp_path):
    (tmp_path / "02_bigram").mkdir()
    (tmp_path / "02_bigram" / "bigram.py").write_text("x")
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "bigram.py").write_text("y")
    message = refused(tmp_path)
    name = tmp_path.name
    assert f"{name}/02_bigram/" in message and f"{name}/backup/" in message and "does not guess" in message


def test_nothing_found_says_where_it_looked(tmp_path):
    (tmp_path / "notes.txt").write_text("I forgot my code")
    assert refused(tmp_path).startswith("No bigram.py in this submission")


def test_fingerprint_and_copy_read_only_what_was_taken(tmp_path):
    root = tmp_path / "ada"
    (root / "pkg").mkdir(parents=True)
    (root / "bigram.py").write_text("import pkg.util\n")
    (root / "pkg" / "util.py").write_text("x = 1\n")
    (root / "__pycache__").mkdir()
    (root / "conftest.py").write_text("raise SystemExit\n")  # never taken: it would hijack pytest
    taken = intake.take(root, STAGE)
    assert taken.files == ("bigram.py", "pkg/util.py")
    key = intake.fingerprint(taken, "02_bigram\0isolated")
    assert key == intake.fingerprint(intake.take(root, STAGE), "02_bigram\0isolated")
    assert key != intake.fingerprint(taken, "02_bigram\0in-process")
    intake.copy(taken, tmp_path / "copy")
    assert sorted(str(p.relative_to(tmp_path / "copy")) for p in (tmp_path / "copy").rglob("*.py")) == ["bigram.py", "pkg/util.py"]

    # Swapped for a link after intake looked: reading it refuses instead of following it.
    (root / "pkg" / "util.py").unlink()
    (root / "pkg" / "util.py").symlink_to(SOLUTION)
    with pytest.raises(intake.Refused, match="changed while it was being read"):
        intake.fingerprint(taken, "02_bigram\0isolated")
