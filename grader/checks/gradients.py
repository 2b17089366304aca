"""Gradients reach every parameter that should train, and nothing else."""
from __future__ import annotations

from ..registry import CheckFailure


def assert_gradients_reach(grads: dict[str, float | None], what: str, frozen: tuple[str, ...] = ()) -> None:
    """`grads` maps parameter names to gradient norms (None: no gradient), as probes.parameter_gradients returns."""
    if not grads:
        raise CheckFailure(f"{what} has no parameters at all: register them as nn.Parameter or inside nn.Module layers.")
    missing = [name for name, g in grads.items() if name not in frozen and (g is None or g == 0.0)]
    if missing:
        raise CheckFailure(
            f"No gradient reaches {', '.join(missing[:5])} in {what}. Something between the output and "
            "these parameters is detached (.detach(), .data, torch.no_grad, .item()) or they are never used."
        )
    leaked = [name for name in frozen if grads.get(name)]
    if leaked:
        raise CheckFailure(f"{', '.join(leaked)} in {what} received gradient, but should stay fixed.")
