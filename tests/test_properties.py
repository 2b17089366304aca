"""The general properties (grader/checks/properties.py): each catches its bug in-process and
isolated, and spares correct code written in another style."""
from __future__ import annotations

import shutil

import pytest
import torch

from conftest import ROOT

from grader.checks import CheckFailure, assert_generator_used, expect_raises  # noqa: E402
from grader.course import load_course  # noqa: E402
from grader.handle import LearnerError, resolve  # noqa: E402
from grader.runner import run_stage  # noqa: E402
from grader.sandbox.remote import RemoteImplementation  # noqa: E402

COURSE = load_course(ROOT)
PROPERTY_CHECKS = ("inputs_unchanged", "follows_device_and_dtype", "stable_on_large_inputs")


def submission(tmp_path, stage_id: str, edits: list[tuple[str, str]]):
    """The reference of `stage_id`, with each (find, replace) applied, as a learner's folder."""
    folder = tmp_path / stage_id
    shutil.copytree(ROOT / "solutions" / stage_id, folder)
    stage = COURSE.stage(stage_id)
    path = folder / stage.files[0]
    text = path.read_text()
    for find, replace in edits:
        assert text.count(find) == 1, find
        text = text.replace(find, replace)
    path.write_text(text)
    return str(folder)


def records(stage_id: str, folder: str, isolated: bool, only: str):
    stage = COURSE.stage(stage_id)
    impl = resolve(COURSE, stage, folder, "reference")
    if not isolated:
        return run_stage(COURSE, stage, impl, only=only)
    remote = RemoteImplementation(impl, COURSE)
    try:
        return run_stage(COURSE, stage, remote, only=only)
    finally:
        remote.close()


@pytest.mark.parametrize("isolated", [False, True], ids=["in-process", "isolated"])
@pytest.mark.parametrize(
    "edit, message",
    [
        # A change the caller sees.
        (("        k = self.key(x)  # (B, T, hs)\n", "        x.mul_(2.0)\n        k = self.key(x)  # (B, T, hs)\n"),
         "changed its input x in place"),
        # No value changes, but an in-place operation on a leaf that requires grad raises in training.
        (("        k = self.key(x)  # (B, T, hs)\n", "        x.add_(0.0)\n        k = self.key(x)  # (B, T, hs)\n"),
         "fails when its input requires grad"),
    ],
    ids=["mutated", "leaf"],
)
def test_an_input_changed_in_place_is_named_in_both_modes(tmp_path, isolated, edit, message):
    folder = submission(tmp_path, "05_attention", [edit])
    (record,) = records("05_attention", folder, isolated, "inputs_unchanged")
    assert record.status == "failed"
    assert message in record.message


@pytest.mark.parametrize("isolated", [False, True], ids=["in-process", "isolated"])
def test_an_embedding_looked_up_with_cpu_positions_is_named(tmp_path, isolated):
    # The meta device alone accepts CPU indices into a meta embedding; a GPU does not.
    folder = submission(tmp_path, "07_layernorm", [("pos = torch.arange(T, device=idx.device)", "pos = torch.arange(T)")])
    (record,) = records("07_layernorm", folder, isolated, "follows_device_and_dtype")
    assert record.status == "failed"
    assert "without device=" in record.message and "embedding" in record.message


# Correct, in another style: the mask made in forward on x's device, torch.softmax, a 0-dim
# CPU tensor in torch.where (which every device accepts), the scale applied to q first, and
# positions picked with CPU indices (a GPU tensor accepts those too), and a value read in
# forward (which meta tensors cannot give: the dtypes are then checked on the CPU).
OTHER_STYLE_HEAD = [
    ('        wei = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5  # (B, T, T)',
     '        wei = (q * k.shape[-1] ** -0.5) @ k.transpose(-2, -1)'),
    ('        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))',
     '        keep = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()\n'
     '        wei = torch.where(keep, wei, torch.tensor(float("-inf")))'),
    ("        wei = F.softmax(wei, dim=-1)", "        wei = torch.softmax(wei, -1)"),
    ("        v = self.value(x)  # (B, T, hs)", "        v = self.value(x)[:, torch.arange(T)]"),
    ("        return wei @ v", "        if bool(wei.isnan().any()):  # reads a value: legal, if slow\n"
                             "            raise ValueError('NaN in the attention weights')\n"
                             "        return wei @ v"),
]


@pytest.mark.parametrize("isolated", [False, True], ids=["in-process", "isolated"])
def test_correct_code_in_another_style_passes_every_property(tmp_path, isolated):
    folder = submission(tmp_path, "05_attention", OTHER_STYLE_HEAD)
    for check_id in PROPERTY_CHECKS:
        (record,) = records("05_attention", folder, isolated, check_id)
        assert record.status == "passed", record.message


def test_the_generator_property_names_each_way_to_get_it_wrong():
    assert_generator_used(lambda g: torch.randint(10, (8,), generator=g), "randint")
    with pytest.raises(CheckFailure, match="seeded alike gave different draws"):
        assert_generator_used(lambda g: torch.randint(10, (8,)), "ignores the generator")
    with pytest.raises(CheckFailure, match="generator=None, two calls in a row gave the same draws"):
        assert_generator_used(
            lambda g: torch.randint(10, (8,), generator=g or torch.Generator().manual_seed(0)), "a seed of its own"
        )


def test_expect_raises_wants_the_documented_type():
    def raising(kind):
        def call():
            raise LearnerError(kind("no"), "bpe.py, line 1, in decode", "decode()")

        return call

    assert isinstance(expect_raises(raising(ValueError), ValueError, "decode([999])").original, ValueError)
    with pytest.raises(CheckFailure, match="should raise ValueError, but it raised KeyError"):
        expect_raises(raising(KeyError), ValueError, "decode([999])")
    with pytest.raises(CheckFailure, match="should raise ValueError, but it returned 'x'"):
        expect_raises(lambda: "x", ValueError, "decode([999])")
