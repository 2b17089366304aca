"""Gradients reach every parameter that should train, and nothing else."""
from __future__ import annotations

import torch

from ..probes import backward_scalar, call_seeded, parameter_gradients, set_parameter
from ..registry import CheckFailure

# Each parameter is moved by STEP along a unit direction: large enough that float32 rounding of
# the loss (about 1e-7 of it) stays far below the change, small enough that curvature does too.
STEP = 1e-2


def gradients_of(impl, model, *inputs, what: str) -> dict[str, float | None]:
    """Each named parameter's gradient norm (None: no gradient) after backward of the model's
    loss, or of its output's sum, on `inputs`.

    Autograd runs beside the learner's code, so the parent does not take its word: along a
    direction of its own choosing (half the reported gradient's, half random), it moves each
    parameter both ways, reads the scalar from the outputs, and the reported gradient must
    predict the change. A parameter that does not change the outputs must report none. Every
    forward starts from the same seed, so that dropout, when on, is the same in each.
    """
    seed = int(torch.randint(0, 2**31, ()))  # dropout, if on, draws the same masks in every forward
    report = impl.probe(parameter_gradients, model, seed, *inputs)
    directions = torch.Generator().manual_seed(seed)
    for name, entry in report.items():
        value, grad = entry["value"], entry["grad"]
        if grad is None or not value.is_floating_point() or value.numel() == 0:
            continue
        grad = grad.to(torch.float64)
        noise = torch.randn(value.shape, generator=directions, dtype=torch.float64)
        direction = noise / noise.norm() + (grad / grad.norm() if grad.norm() > 0 else 0)
        direction = direction / direction.norm()
        moved = []
        for sign in (1, -1):
            impl.probe(set_parameter, model, name, value + sign * STEP * direction.to(value.dtype))
            moved.append(float(backward_scalar(impl.probe(call_seeded, model, seed, *inputs))))
        impl.probe(set_parameter, model, name, value)
        measured = (moved[0] - moved[1]) / (2 * STEP)
        predicted = float((grad * direction).sum())
        if moved[0] == moved[1] and abs(predicted) > 1e-6 or abs(measured - predicted) > 0.1 * abs(predicted) + 1e-3:
            raise CheckFailure(
                f"The gradient reported for {name} in {what} does not match the loss: moving {name} by {STEP} along "
                f"one direction changes it at a rate of {measured:.4g}, the gradient predicts {predicted:.4g}. "
                "Gradients must come from backward() of the loss your model computes."
            )
    return {name: (None if entry["grad"] is None else float(entry["grad"].norm())) for name, entry in report.items()}


def assert_gradients_reach(grads: dict[str, float | None], what: str, frozen: tuple[str, ...] = ()) -> None:
    """`grads` maps parameter names to gradient norms (None: no gradient), as gradients_of returns."""
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
