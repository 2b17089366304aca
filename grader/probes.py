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


def count_torch_calls(fn, *args, **kwargs) -> int:
    """How many torch functions and tensor methods `fn(*args, **kwargs)` calls, nested ones not counted.

    Deterministic where timing is not: a vectorized function makes the same number of calls
    for every sequence length, a Python loop over positions makes more as T grows.
    """
    from torch.overrides import TorchFunctionMode

    class Counter(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.calls = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.calls += 1
            return func(*args, **(kwargs or {}))

    with Counter() as counter:
        fn(*args, **kwargs)
    return counter.calls


def tensor_layout(module: torch.nn.Module) -> dict[str, dict[str, tuple[int, ...]]]:
    """Where a module keeps its tensors: name -> shape, by kind.

    'parameters' and 'buffers' as nn.Module registers them (buffers include non-persistent
    ones), 'state_dict' as saving would write it, and 'attributes': plain tensors assigned
    as attributes (`self.mask = torch.tril(...)`), which `.to(device)` and `state_dict` miss.
    """
    attributes = {}
    for prefix, sub in module.named_modules():
        for name, value in vars(sub).items():
            if isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter):
                attributes[f"{prefix}.{name}" if prefix else name] = tuple(value.shape)
    return {
        "parameters": {name: tuple(p.shape) for name, p in module.named_parameters()},
        "buffers": {name: tuple(b.shape) for name, b in module.named_buffers()},
        "state_dict": {name: tuple(t.shape) for name, t in module.state_dict().items()},
        "attributes": attributes,
    }


class RecordingModel(torch.nn.Module):
    """A stand-in language model that writes down how it is called, for testing code that evaluates models.

    `model(idx, targets)` returns `(logits, loss)` like the course's models. Its losses are
    known in advance: the k-th call (from 1) returns k in eval mode and k + TRAIN_PENALTY in
    training mode (think of dropout making a training-mode loss worse). Each call appends a
    dict to `calls`: the mode of the model and of its dropout submodule, whether autograd was
    recording, the device, the loss it returned, and idx/targets (CPU copies; None on "meta").
    """

    TRAIN_PENALTY = 1000.0

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.dropout = torch.nn.Dropout(0.5)
        self.calls: list[dict] = []

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        value = float(len(self.calls) + 1) + (self.TRAIN_PENALTY if self.training else 0.0)
        on_meta = idx.device.type == "meta"
        self.calls.append({
            "training": self.training,
            "dropout_training": self.dropout.training,
            "grad_enabled": torch.is_grad_enabled(),
            "device": idx.device.type,
            "loss": value,
            "idx": None if on_meta else idx.detach().cpu().clone(),
            "targets": None if on_meta or targets is None else targets.detach().cpu().clone(),
        })
        logits = self.weight.expand(*idx.shape, 1)
        return logits, self.weight * 0.0 + value  # a 0-dim loss that needs grad when grad is on


class BigramLossModel(torch.nn.Module):
    """A fixed bigram model with dropout on its logits: `(logits, mean cross-entropy)`.

    `table[a]` holds the logits of the token after a. In training mode dropout scales and
    zeroes logits, which changes the loss; in eval mode the loss is exact.
    """

    def __init__(self, table: torch.Tensor, dropout: float = 0.5):
        super().__init__()
        self.table = torch.nn.Parameter(table.clone().float())
        self.dropout = torch.nn.Dropout(dropout)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        logits = self.dropout(self.table[idx])
        if targets is None:
            return logits, None
        return logits, torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())


def evaluate_with(evaluate, model: torch.nn.Module, *args, **kwargs) -> dict:
    """Call `evaluate(model, *args, **kwargs)` (a learner's estimate_loss) on a trusted model.

    Returns what it returned ('result'), the calls the model recorded ('calls', when it
    records them) and the mode of every module afterwards ('modes_after', model first).
    """
    result = evaluate(model, *args, **kwargs)
    return {
        "result": result,
        "calls": list(getattr(model, "calls", [])),
        "modes_after": [m.training for m in model.modules()],
    }


def timed_calls(fn, *args, times: int = 1, threads: int = 0, cpu_time: bool = False) -> float:
    """Seconds that `times` calls of fn(*args) take, timed in the process where fn runs.

    Timed where the code runs, so a sandbox's pipe adds nothing to it. `threads` > 0 pins
    PyTorch's intra-op threads meanwhile: on a small shared machine, two threads make
    sub-millisecond timings jump by tens of milliseconds. `cpu_time` counts this thread's
    CPU time instead of the wall clock, so other busy processes do not inflate it; use it
    with threads=1, where all of PyTorch's work runs on this thread.
    """
    import time

    clock = time.thread_time if cpu_time else time.perf_counter
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        start = clock()
        for _ in range(times):
            fn(*args)
        return clock() - start
    finally:
        torch.set_num_threads(before)
