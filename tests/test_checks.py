"""The shared checks and the handle: each can fail, and says where and why."""
import shutil
import textwrap

import pytest
import torch

from grader.checks import (
    CheckFailure,
    Skip,
    assert_causal,
    assert_close,
    assert_gradients_reach,
    assert_init_loss,
    assert_speed_ratio,
    dependency_map,
    expect_tensor,
    measure_ratio,
    perturb_vector,
)
from conftest import ROOT
from grader.checks.forbidden import scan
from grader.course import load_course
from grader.handle import Implementation, LearnerError, ObjectHandle, resolve
from grader.report import render
from grader.runner import run_stage


def test_assert_close_names_position_and_size():
    expected = torch.zeros(2, 3)
    actual = expected.clone()
    actual[1, 2] = 0.5
    with pytest.raises(CheckFailure) as info:
        assert_close(actual, expected, "out", hint="Check the mask.")
    message = str(info.value)
    assert "wrong at 1 of 6 positions" in message
    assert "index [1, 2]: got 0.5, expected 0" in message
    assert message.endswith("Check the mask.")
    assert_close(expected + 1e-9, expected, "out")


def test_assert_close_is_strict_about_shape_and_dtype():
    with pytest.raises(CheckFailure, match=r"shape \(3, 2\), expected \(2, 3\)"):
        assert_close(torch.zeros(3, 2), torch.zeros(2, 3), "out")
    with pytest.raises(CheckFailure, match="dtype torch.float64, expected torch.float32"):
        assert_close(torch.zeros(2, dtype=torch.float64), torch.zeros(2), "out")
    with pytest.raises(CheckFailure, match="should be a torch.Tensor, but it is a list"):
        expect_tensor([1.0], "out")


def test_causality_map_shows_the_leak():
    x = torch.randn(1, 4, 3)
    causal = dependency_map(lambda v: v.cumsum(dim=1), x, perturb_vector)
    assert_causal(causal, "cumsum")
    leaky = dependency_map(lambda v: v.flip(1).cumsum(dim=1).flip(1), x, perturb_vector)
    with pytest.raises(CheckFailure) as info:
        assert_causal(leaky, "reverse cumsum")
    message = str(info.value)
    assert "position 0's output changed when the token at position 1 changed" in message
    assert "output 0  # X X X" in message


def test_init_loss_and_gradients():
    assert_init_loss(4.2, 65, tolerance=0.5)
    with pytest.raises(CheckFailure, match=r"about ln\(65\) = 4.1744"):
        assert_init_loss(9.0, 65, tolerance=0.5)
    assert_gradients_reach({"w": 1.0}, "model")
    with pytest.raises(CheckFailure, match="No gradient reaches w"):
        assert_gradients_reach({"w": None, "b": 1.0}, "model")


def test_speed_ratio_compares_side_by_side():
    fast = lambda: sum(range(1000))  # noqa: E731
    slow = lambda: [sum(range(1000)) for _ in range(30)]  # noqa: E731
    result = measure_ratio(slow, fast, repeats=3)
    assert result.ratio > 5
    with pytest.raises(CheckFailure, match="the reference's time"):
        assert_speed_ratio(result, 4.0, "slow")
    if not torch.cuda.is_available():
        with pytest.raises(Skip, match="needs CUDA"):
            measure_ratio(fast, fast, device="cuda")


def test_forbidden_scan_sees_through_aliases(tmp_path):
    source = tmp_path / "attention.py"
    source.write_text(textwrap.dedent("""
        import torch.nn.functional as F
        from torch.nn.functional import scaled_dot_product_attention as sdpa
        def f(q, k, v, self=None):
            self.layer_norm(q)                     # the learner's own method: allowed
            getattr(F, "layer_norm")(q, (3,))
            return F.scaled_dot_product_attention(q, k, v)
    """))
    found = scan([source], ("torch.nn.functional.scaled_dot_product_attention", "torch.nn.functional.layer_norm"))
    assert [(v.line, v.api.rsplit(".", 1)[1]) for v in found] == [
        (3, "scaled_dot_product_attention"), (6, "layer_norm"), (7, "scaled_dot_product_attention"),
    ]


class AlwaysEqual:
    def __eq__(self, other):
        return True


class Sneaky(torch.Tensor):
    def __eq__(self, other):
        return True


def make_impl():
    stage = load_course().stage("02_bigram")
    return Implementation("test", stage, [])


def test_handle_returns_only_plain_data():
    impl = make_impl()
    wrapped = impl.to_plain(AlwaysEqual())
    assert isinstance(wrapped, ObjectHandle)
    assert wrapped != [1, 2]  # a learner object cannot vouch for itself
    sneaky = torch.zeros(2).as_subclass(Sneaky)
    plain = impl.to_plain({"t": sneaky, "n": [1, (2.0, "x")]})
    assert type(plain["t"]) is torch.Tensor and plain["n"] == [1, (2.0, "x")]


def test_learner_exceptions_are_wrapped():
    impl = make_impl()
    with pytest.raises(LearnerError) as info:
        impl.probe(lambda: 1 / 0)
    assert isinstance(info.value.original, ZeroDivisionError)
    assert "Your code raised ZeroDivisionError" in str(info.value)


@pytest.mark.parametrize("breakage, cause", [
    ("import torch.nn.functional as F\nsneaky = F.softmax\n", "forbidden API (softmax.py line 2 uses F.softmax"),
    ("def broken(:\n", "softmax.py has a syntax error on line 1"),
])
def test_a_cause_every_check_shares_is_reported_once(tmp_path, breakage, cause):
    course = load_course()
    stage = course.stage("04_softmax")
    folder = tmp_path / stage.id
    shutil.copytree(ROOT / "solutions" / stage.id, folder)
    source = folder / "softmax.py"
    source.write_text(breakage + source.read_text())
    records = run_stage(course, stage, resolve(course, stage, str(tmp_path), "reference"))
    assert len(records) > 3 and all(r.points_earned == 0 and cause in r.message for r in records)  # every record says why
    report = render(stage, records, "submission", width=2000)
    checks_part = report.split("\nScore:")[0]
    assert checks_part.count(cause) == 1, report  # the report says it once, under the first check
    assert all(r.title in checks_part for r in records)
