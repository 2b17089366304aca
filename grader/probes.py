"""Trusted helpers that a suite runs on learner objects through `impl.probe(...)`.

They do what plain data cannot: train a learner's model for a few steps, overwrite one of
its parameters, read gradients. They return plain data, and the suite judges it.
"""
from __future__ import annotations

import torch


def set_parameter(model: torch.nn.Module, name: str, value: torch.Tensor) -> None:
    params = dict(model.named_parameters())
    if name not in params:
        raise AttributeError(f"the model has no parameter named {name!r}; it has {sorted(params)}")
    with torch.no_grad():
        params[name].copy_(value)


def train_steps(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> list[float]:
    """Full-batch AdamW on model(x, y)'s loss; the losses seen along the way."""
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for _ in range(steps):
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
