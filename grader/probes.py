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


def gradient_map(module: torch.nn.Module, x: torch.Tensor, *args) -> torch.Tensor:
    """deps[i, j]: does output position i send gradient to input position j? (time on dim 1)

    `x` is a float tensor (B, T, C). The causal mask must also stop gradients: a masked
    position gets exactly zero, not a tiny number.
    """
    x = x.clone().requires_grad_(True)
    out = module(x, *args)
    out = out[0] if isinstance(out, tuple) else out
    T = x.shape[1]
    deps = torch.zeros(T, T, dtype=torch.bool)
    for i in range(T):
        (grad,) = torch.autograd.grad(out[:, i].sum(), x, retain_graph=True, allow_unused=True)
        if grad is not None:
            deps[i] = grad.abs().sum(dim=(0, 2)) > 0
    return deps


def parameter_gradients(model: torch.nn.Module, *inputs) -> dict[str, float | None]:
    """The gradient norm of every named parameter after backward of the output's sum (or the loss)."""
    model.zero_grad(set_to_none=True)
    out = model(*inputs)
    if isinstance(out, tuple):  # (logits, loss): use the loss when there is one
        out = out[1] if len(out) > 1 and out[1] is not None else out[0]
    out.float().sum().backward()
    return {
        name: (None if p.grad is None else p.grad.norm().item())
        for name, p in model.named_parameters()
    }
