"""Tests for datasets/ and grader.data. None of them touch the network or write into datasets/."""
from __future__ import annotations

import hashlib
import io
import json
import math
import shutil
import subprocess
import sys
import urllib.error
from collections import Counter
from pathlib import Path

import pytest

from grader import data
from grader.course import CourseError

REPO_DATASETS = Path(data.DATASETS_DIR)


def manifest_entries() -> list[dict]:
    return json.loads((REPO_DATASETS / "manifest.json").read_text(encoding="utf-8"))["datasets"]


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A datasets folder in tmp_path holding only the repo's manifest: nothing shipped, nothing fetched."""
    shutil.copy(REPO_DATASETS / "manifest.json", tmp_path / "manifest.json")
    monkeypatch.setattr(data, "DATASETS_DIR", tmp_path)
    return tmp_path


def add_entry(folder: Path, entry: dict) -> None:
    manifest_file = folder / "manifest.json"
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    manifest["datasets"].append(entry)
    manifest_file.write_text(json.dumps(manifest), encoding="utf-8")


class FakeResponse(io.BytesIO):
    """What urlopen returns, closely enough: a readable context manager."""


def serve(monkeypatch, payload: bytes) -> list[str]:
    """Make urlopen return payload; return the list of URLs it was asked for."""
    asked = []

    def fake_urlopen(url, timeout=None):
        asked.append(url)
        assert timeout is not None, "downloads must have a timeout"
        return FakeResponse(payload)

    monkeypatch.setattr(data.urllib.request, "urlopen", fake_urlopen)
    return asked


# --- the shipped corpora --------------------------------------------------------------------


def test_manifest_lists_the_expected_datasets():
    by_name = {e["name"]: e for e in manifest_entries()}
    assert {"fables", "multilingual", "tinyshakespeare"} <= set(by_name)
    for entry in by_name.values():
        assert {"name", "file", "bytes", "sha256", "description", "source", "shipped"} <= set(entry)
    shakespeare = by_name["tinyshakespeare"]
    assert shakespeare["shipped"] is False
    assert shakespeare["file"] == "downloads/tinyshakespeare.txt"
    assert shakespeare["source"].startswith("https://")


@pytest.mark.parametrize("entry", [e for e in manifest_entries() if e["shipped"]], ids=lambda e: e["name"])
def test_shipped_corpora_match_the_manifest(entry):
    blob = (REPO_DATASETS / entry["file"]).read_bytes()
    assert len(blob) == entry["bytes"]
    assert hashlib.sha256(blob).hexdigest() == entry["sha256"], (
        f"{entry['file']} differs from the manifest; run `python datasets/make_corpora.py`"
    )
    assert data.path(entry["name"]) == REPO_DATASETS / entry["file"]


def test_fables_looks_like_a_small_english_corpus():
    text = data.corpus("fables")
    assert 150_000 <= len(text.encode("utf-8")) <= 250_000
    assert text.isascii()
    vocab = set(text)
    assert 50 <= len(vocab) <= 70
    assert {'"', ",", ".", "?", "!", "'", "\n"} <= vocab
    assert any(c.isdigit() for c in vocab)
    assert "\n\n" in text
    # Not trivially repetitive: plenty of distinct words and paragraphs.
    words = {w.strip('.,!?"\':;').lower() for w in text.split()}
    assert len(words) > 400
    paragraphs = text.split("\n\n")
    assert len(set(paragraphs)) > 0.8 * len(paragraphs)


def test_fables_has_structure_a_bigram_model_can_learn():
    # The previous character should tell a lot about the next one: the conditional entropy
    # H(next | prev) must sit well below the unigram entropy H(next).
    text = data.corpus("fables")
    unigrams = Counter(text)
    bigrams = Counter(zip(text, text[1:]))
    n = len(text)
    h1 = -sum(c / n * math.log2(c / n) for c in unigrams.values())
    m = n - 1
    h2 = -sum(c / m * math.log2(c / unigrams[a]) for (a, _), c in bigrams.items())
    assert h2 < h1 - 1.0, (h1, h2)


def test_multilingual_exercises_unicode():
    text = data.corpus("multilingual")
    assert 3_000 <= len(text.encode("utf-8")) <= 8_000
    assert text.count("<|endoftext|>") >= 3
    for sample in ["é", "ß", "ñ", "λ", "ж", "中", "の", "한", "ع", "ह", "e\u0301", "\u200d", "\U0001F1EB", "\t", "  ", "3.14159", "don't"]:
        assert sample in text, sample
    assert any(len(ch.encode("utf-8")) == 4 for ch in text)  # emoji: 4-byte sequences


def test_regenerating_gives_identical_bytes(tmp_path):
    script = REPO_DATASETS / "make_corpora.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], check=True, capture_output=True)
    for name in ["fables.txt", "multilingual.txt", "manifest.json"]:
        assert (tmp_path / name).read_bytes() == (REPO_DATASETS / name).read_bytes(), name


# --- errors a learner can meet --------------------------------------------------------------


def test_unknown_dataset_names_the_real_ones():
    with pytest.raises(CourseError) as info:
        data.corpus("fable")
    message = str(info.value)
    assert "fable" in message and "Did you mean 'fables'" in message
    assert "python -m grader data list" in message


def test_missing_download_says_how_to_fetch(sandbox):
    assert data.path("tinyshakespeare") is None
    with pytest.raises(CourseError, match="python -m grader data fetch tinyshakespeare"):
        data.corpus("tinyshakespeare")


def test_damaged_file_is_refused(sandbox):
    shutil.copy(REPO_DATASETS / "fables.txt", sandbox / "fables.txt")
    assert data.path("fables") == sandbox / "fables.txt"
    with open(sandbox / "fables.txt", "r+b") as f:
        f.write(b"X")  # same size, different contents
    assert data.path("fables") is None
    with pytest.raises(CourseError, match="damaged"):
        data.corpus("fables")


# --- fetch ------------------------------------------------------------------------------------


def test_fetch_network_failure_says_download_by_hand(sandbox, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    with pytest.raises(CourseError) as info:
        data.fetch("tinyshakespeare")
    message = str(info.value)
    assert "by hand" in message
    assert str(sandbox / "downloads" / "tinyshakespeare.txt") in message
    assert list((sandbox / "downloads").iterdir()) == []


def test_fetch_wrong_hash_keeps_nothing(sandbox, monkeypatch):
    serve(monkeypatch, b"<html>Not the file you wanted</html>")
    with pytest.raises(CourseError, match="not the expected file"):
        data.fetch("tinyshakespeare")
    assert list((sandbox / "downloads").iterdir()) == []
    assert data.path("tinyshakespeare") is None


def test_fetch_saves_a_good_download_once(sandbox, monkeypatch):
    payload = b"To fetch or not to fetch.\n" * 100
    add_entry(sandbox, {
        "name": "tiny", "file": "downloads/tiny.txt", "bytes": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(), "description": "test",
        "source": "https://example.invalid/tiny.txt", "shipped": False,
    })
    asked = serve(monkeypatch, payload)
    target = data.fetch("tiny")
    assert target == sandbox / "downloads" / "tiny.txt"
    assert target.read_bytes() == payload
    assert data.corpus("tiny") == payload.decode()
    assert [p.name for p in target.parent.iterdir()] == ["tiny.txt"]  # no temp files left
    data.fetch("tiny")  # already present and valid: no second download
    assert asked == ["https://example.invalid/tiny.txt"]


# --- python -m grader data ... ----------------------------------------------------------------


def test_command_list_and_verify(sandbox, capsys):
    shutil.copy(REPO_DATASETS / "fables.txt", sandbox / "fables.txt")
    shutil.copy(REPO_DATASETS / "multilingual.txt", sandbox / "multilingual.txt")
    assert data.command("list", None) == 0
    out = capsys.readouterr().out
    assert "fables" in out and "shipped" in out
    assert "tinyshakespeare" in out and "missing" in out
    assert data.command("verify", None) == 0
    assert "OK" in capsys.readouterr().out

    (sandbox / "multilingual.txt").write_bytes(b"tampered")
    assert data.command("verify", None) == 1
    assert "BAD  multilingual" in capsys.readouterr().out


def test_command_fetch_needs_a_name(sandbox):
    with pytest.raises(CourseError, match="python -m grader data fetch tinyshakespeare"):
        data.command("fetch", None)


# --- the demos' loader and the benchmarks ------------------------------------------------------

ROOT = REPO_DATASETS.parent


def test_char_corpus_is_the_text_one_token_per_character():
    import torch

    corpus = data.char_corpus("fables")
    assert corpus.text == data.corpus("fables")
    assert corpus.chars == sorted(set(corpus.text)) and corpus.vocab_size == len(corpus.chars)
    assert corpus.data.dtype == torch.long and corpus.data.shape == (len(corpus.text),)
    assert corpus.decode(corpus.data[:500].tolist()) == corpus.text[:500]
    x, y = corpus.batch(5, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (5, 16) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])  # y is x one token later
    again, _ = corpus.batch(5, 16, torch.Generator().manual_seed(0))
    assert torch.equal(x, again)


@pytest.mark.parametrize("stage_file", ["07_layernorm/gpt.py", "10_llama/llama.py"])
@pytest.mark.parametrize("folder", ["solutions", "exercises"])
def test_demos_load_the_corpus_through_the_shared_loader(folder, stage_file):
    source = (ROOT / folder / stage_file).read_text(encoding="utf-8")
    demo = source.split('if __name__ == "__main__":')[-1]
    assert "from grader.data import char_corpus" in demo
    assert "fables.txt" not in source and "read_text" not in demo


@pytest.mark.parametrize("stage_file", ["07_layernorm/gpt.py", "10_llama/llama.py"])
def test_demos_run(stage_file, tmp_path):
    """The reference's demos, end to end. They train for 200 steps (minutes on a CPU): a
    `range` in the script's globals that stops at 3 keeps every line of them running."""
    script = (
        "import builtins, runpy, sys\n"
        "runpy.run_path(sys.argv[1], run_name='__main__', init_globals={'range': lambda *a: builtins.range(*a)[:3]})\n"
    )
    out = subprocess.run([sys.executable, "-c", script, str(ROOT / "solutions" / stage_file)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "step   0: loss" in out.stdout and "sample:" in out.stdout


def test_bpe_benchmark_trains_on_the_course_datasets(tmp_path):
    script = ROOT / "benchmarks" / "bpe_train.py"
    assert "/work/" not in script.read_text(encoding="utf-8")
    # From any folder: the dataset is found through the course, not a path of one machine.
    out = subprocess.run([sys.executable, str(script), "--dataset", "fables", "--vocab-size", "270", "--repeats", "1",
                          "--skip-naive", "--skip-hf"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "the `fables` dataset (200,305 characters)" in out.stdout and "| reference |" in out.stdout
    out = subprocess.run([sys.executable, str(script), "--dataset", "fabels", "--repeats", "1"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Did you mean 'fables'?" in out.stderr and "Traceback" not in out.stderr
