"""Strict types, shapes and dtypes, and closeness with a message that says where and by how much."""
from __future__ import annotations

from typing import Any

import torch

from ..registry import CheckFailure
from ..report import LIKELY_CAUSE


def cause(text: str) -> str:
    """`text`, the diagnosis of a failure, marked so that the report's "Fix first" quotes it
    rather than the first line of the symptom. Put it on a line of its own in the message."""
    return f"{LIKELY_CAUSE}{text}"


def then_hint(hint: str) -> str:
    """A hint to put after a sentence: on the same line, or on its own when it starts a line (a cause)."""
    return hint if not hint or hint.startswith("\n") else f" {hint}"


def expect_type(value: Any, kind: type, name: str) -> None:
    if type(value) is not kind:
        raise CheckFailure(f"{name} should be a {kind.__name__}, but it is a {type(value).__name__}: {_short(value)}.")


def expect_int_list(value: Any, name: str) -> list[int]:
    expect_type(value, list, name)
    for i, item in enumerate(value):
        if type(item) is not int:
            raise CheckFailure(f"{name}[{i}] should be an int, but it is a {type(item).__name__}: {_short(item)}.")
    return value


def expect_tensor(
    value: Any, name: str, shape: tuple | None = None, dtype: torch.dtype | None = None, hint: str = ""
) -> torch.Tensor:
    hint = f" {hint}" if hint else ""
    if not isinstance(value, torch.Tensor):
        raise CheckFailure(f"{name} should be a torch.Tensor, but it is a {type(value).__name__}: {_short(value)}.{hint}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise CheckFailure(f"{name} has shape {tuple(value.shape)}, expected {tuple(shape)}.{hint}")
    if dtype is not None and value.dtype != dtype:
        raise CheckFailure(f"{name} has dtype {value.dtype}, expected {dtype}.{hint}")
    return value


def assert_close(
    actual: Any,
    expected: torch.Tensor,
    name: str,
    rtol: float = 1e-5,
    atol: float = 1e-6,
    hint: str = "",
) -> None:
    """`actual` equals `expected` within atol + rtol*|expected|, elementwise; same shape and dtype.

    The message names the first few bad positions, the largest difference and the tolerance,
    then the hint: the most likely cause, in a learner's words.
    """
    expect_tensor(actual, name, tuple(expected.shape), expected.dtype)
    a, e = actual.detach().double().cpu(), expected.detach().double().cpu()
    bad = ~torch.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
    if not bad.any():
        return
    tolerance = f"tolerance {atol:g} + {rtol:g}*|expected|"
    if e.numel() == 1:
        message = f"{name} is {a.item():.6g}, expected {e.item():.6g} ({tolerance})."
        raise CheckFailure(f"{message}\n{hint}" if hint else message)
    where = bad.nonzero()
    diff = (a - e).abs().nan_to_num(nan=float("inf"))
    worst = tuple(int(i) for i in torch.unravel_index((diff * bad).flatten().argmax(), diff.shape))
    shown = ", ".join(
        f"{_index(tuple(int(i) for i in idx))}: got {a[tuple(idx)].item():.6g}, expected {e[tuple(idx)].item():.6g}"
        for idx in where[:3]
    )
    lines = [
        f"{name} is wrong at {len(where)} of {e.numel()} positions ({tolerance}).",
        f"First: {shown}.",
        f"Largest difference {diff[worst].item():.3g} at {_index(worst)}.",
    ]
    if torch.isnan(a).any():
        lines.append(f"{name} contains NaN at {_index(tuple(int(i) for i in torch.isnan(a).nonzero()[0]))}.")
    if hint:
        lines.append(hint)
    raise CheckFailure("\n".join(lines))


def _index(idx: tuple) -> str:
    return f"index {list(idx)}" if idx else "the scalar"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def likely_bug(got: Any, expected: torch.Tensor, bugs, default: str, rtol: float = 1e-4, atol: float = 1e-5) -> str:
    """The hint for a wrong `got`: the first (hint, output) of `bugs` whose output equals `got`,
    marked as the message's diagnosis (`cause`).

    `bugs` is usually a generator, so each bug's output is computed only while no match is
    found. A right value, or a wrong shape or dtype (which get messages of their own), gets
    `default`, as does a value that matches no known bug.
    """
    if (not isinstance(got, torch.Tensor) or got.shape != expected.shape or got.dtype != expected.dtype
            or torch.allclose(got, expected, rtol, atol)):
        return default
    for hint, value in bugs:
        # NaN where the bug gives NaN matches: an overflow in the learner's code overflows in the grader's copy.
        if value.shape == got.shape and torch.allclose(got.double(), value.double(), rtol=rtol, atol=atol,
                                                       equal_nan=True):
            return cause(hint)
    return default

