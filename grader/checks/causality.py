"""Which output position depends on which input position, shown as a small grid."""
from __future__ import annotations

from typing import Callable

import torch

from ..registry import CheckFailure


def dependency_map(
    run: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, perturb: Callable[[torch.Tensor, int], torch.Tensor],
    exact: bool = False,
) -> torch.Tensor:
    """deps[i, j] is True when output position i changes after input position j changes.

    `inputs` and the outputs of `run` have time on dimension 1; `perturb(inputs, j)` returns
    a copy of `inputs` that differs at position j only. `exact`: any change of a bit counts.
    Code that masks the future (-inf before the softmax) gives the future exactly zero weight,
    and x + 0 is x in floating point, so its earlier outputs stay bit for bit the same; code
    that multiplies the future away after the softmax moves them by rounding errors. Those are
    what a gradient would show, measured here from outside the learner's code.
    """
    base = run(inputs)
    T = inputs.shape[1]
    deps = torch.zeros(T, T, dtype=torch.bool)
    # NaN in the outputs (an inverted mask leaves a row with nothing to attend to) must not hide
    # the rest: a value that turns into or out of NaN changed, one that stays NaN did not.
    scale = 0.0 if exact else 1 + base.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0).abs().max()
    for j in range(T):
        changed = run(perturb(inputs, j))
        moved = ((changed - base).abs() > 1e-6 * scale) | (changed.isnan() != base.isnan())
        deps[:, j] = moved.transpose(0, 1).reshape(T, -1).any(dim=1)
    return deps


def perturb_token(vocab_size: int) -> Callable[[torch.Tensor, int], torch.Tensor]:
    def perturb(idx: torch.Tensor, j: int) -> torch.Tensor:
        out = idx.clone()
        out[:, j] = (out[:, j] + 1 + out[:, j] % 3) % vocab_size
        return out

    return perturb


def perturb_vector(x: torch.Tensor, j: int) -> torch.Tensor:
    out = x.clone()
    gen = torch.Generator().manual_seed(1000 + j)
    out[:, j] = out[:, j] + torch.randn(out[:, j].shape, generator=gen, dtype=out.dtype)
    return out


def render_map(deps: torch.Tensor) -> str:
    """A grid: rows are output positions, columns input positions. '#' depends, 'X' leaks the future."""
    T = deps.shape[0]
    width = len(str(T - 1))
    header = " " * (width + 9) + " ".join(f"{j:>{width}}" for j in range(T))
    rows = [header]
    for i in range(T):
        cells = []
        for j in range(T):
            cell = "X" if deps[i, j] and j > i else ("#" if deps[i, j] else ".")
            cells.append(f"{cell:>{width}}")
        rows.append(f"output {i:>{width}}  " + " ".join(cells))
    rows.append("('#' depends on that input, 'X' depends on a future input: a leak, '.' no dependence)")
    return "\n".join(rows)


def assert_causal(
    deps: torch.Tensor, what: str, hint: str = "", require_self: bool = False, exact: bool = False
) -> None:
    """No output position depends on a later input. `exact`: `deps` counts changes of a rounding
    error (dependency_map(..., exact=True)), and the message says so."""
    leaks = [(i, j) for i in range(deps.shape[0]) for j in range(deps.shape[1]) if j > i and deps[i, j]]
    blind = [i for i in range(deps.shape[0]) if require_self and not deps[i, i]]
    if not leaks and not blind:
        return
    lines = []
    if leaks:
        i, j = leaks[0]
        effect = (
            f"position {i}'s output changed, if only by a rounding error, when the input at position {j} changed "
            "(so a gradient, however small, flows back to the future)"
            if exact
            else f"position {i}'s output changed when the token at position {j} changed"
        )
        lines.append(
            f"{what}: {effect}. Output at position t may only depend on positions <= t; "
            f"{len(leaks)} such leaks in all."
        )
    if blind:
        lines.append(f"{what}: position {blind[0]}'s output does not depend on its own token at all.")
    lines.append(render_map(deps))
    if hint:
        lines.append(hint)
    raise CheckFailure("\n".join(lines))
