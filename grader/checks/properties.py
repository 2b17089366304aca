"""General properties every stage's code must have, wherever they apply.

- Inputs are never changed: a caller keeps using what it passes in, and a training loop
  passes leaves that require grad.
- Device and dtype follow the inputs: nothing made on a fixed device or dtype inside forward
  (tried on PyTorch's 'meta' device, which every machine has, in float64).
- Numerically stable: large activations (inputs times 10 and times 100) give finite values.
- Randomness comes from the generator given: a seeded one repeats, None does not.
- A documented error is raised with its documented type.

Each helper calls the learner's code through the handle (or a probe of grader/probes.py,
so that it works the same in isolated mode) and judges what comes back in the parent.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ..handle import LearnerError
from ..probes import READS_VALUES, call_moved, call_reporting_inputs
from ..registry import CheckFailure
from .values import assert_close, then_hint

IN_PLACE_HINT = (
    "Callers keep using what they pass in: compute into a new tensor (x = x - m, not x -= m or "
    "x.sub_(m); masked_fill, not masked_fill_)."
)
DICT_HINT = (
    "Callers keep using what they pass in: filter a dict you are given into a new one "
    "({k: v for k, v in d.items() if ...}) rather than del or pop its keys, and leave its tensors as they are."
)
DEVICE_HINT = (
    "A tensor made inside forward without device= (torch.ones(T, T), torch.zeros(...), torch.arange(T)) "
    "stays on the CPU in float32 whatever the input: make it with device=x.device (and dtype=x.dtype), "
    "or register it as a buffer in __init__ so that .to() moves it with the module."
)


def _argument_name(i: int | str, names: tuple[str, ...]) -> str:
    if isinstance(i, str):
        return i
    return names[i] if i < len(names) else f"argument {i + 1}"


def _first_change(before: torch.Tensor, after: Any) -> str:
    if not isinstance(after, torch.Tensor) or after.shape != before.shape or after.dtype != before.dtype:
        got = f"shape {tuple(after.shape)}, {after.dtype}" if isinstance(after, torch.Tensor) else type(after).__name__
        return f"it was {tuple(before.shape)}, {before.dtype} and is now {got}"
    changed = (before != after) & ~(before.isnan() & after.isnan()) if before.is_floating_point() else before != after
    where = [int(i) for i in changed.nonzero()[0]]
    return (f"{int(changed.sum())} of {before.numel()} entries differ, the first at index {where}: it was "
            f"{before[tuple(where)].item():.6g}, it is now {after[tuple(where)].item():.6g}")


def _unchanged(before: torch.Tensor, after: Any) -> bool:
    return (isinstance(after, torch.Tensor) and after.shape == before.shape and after.dtype == before.dtype
            and torch.equal(before.isnan() if before.is_floating_point() else before,
                            after.isnan() if after.is_floating_point() else after)
            and torch.equal(before.nan_to_num(), after.nan_to_num()))


def _change(before: Any, after: Any) -> str:
    """How an argument changed in place ('' when it did not): a tensor's values, or a dict's
    keys and tensors (a state dict is an argument too)."""
    if isinstance(before, torch.Tensor):
        return "" if _unchanged(before, after) else _first_change(before, after)
    if type(before) is dict:
        if type(after) is not dict:
            return f"it was a dict and is now a {type(after).__name__}"
        gone, added = [k for k in before if k not in after], [k for k in after if k not in before]
        if gone or added:
            return "; ".join(f"keys {how} {keys[:3]}" for how, keys in (("removed", gone), ("added", added)) if keys)
        return next((f"entry {k!r}: {change}" for k in before if (change := _change(before[k], after[k]))), "")
    return ""


def _compare_inputs(args: tuple, kwargs: dict, report: dict, what: str, names: tuple[str, ...]) -> None:
    sent = [*enumerate(args), *kwargs.items()]
    after = dict(enumerate(report["args"])) | report["kwargs"]
    for key, value in sent:
        change = _change(value, after.get(key))
        if change:
            raise CheckFailure(f"{what} changed its input {_argument_name(key, names)} in place: {change}. "
                               f"{DICT_HINT if type(value) is dict else IN_PLACE_HINT}")


def assert_inputs_unchanged(impl, fn, *args, what: str, names: tuple[str, ...] = (), **kwargs) -> Any:
    """Call `fn(*args, **kwargs)` twice: as given, then with every floating-point tensor
    argument a leaf that requires grad. Fails when a tensor argument (or a dict of them, such as
    a state dict) differs after a call, or when an in-place operation on a leaf raised. `names`
    name the positional arguments in messages. Returns the first call's result."""
    report = impl.probe(call_reporting_inputs, fn, args, kwargs)
    _compare_inputs(args, kwargs, report, what, names)
    if any(isinstance(v, torch.Tensor) and v.is_floating_point() for v in (*args, *kwargs.values())):
        try:
            leaves = impl.probe(call_reporting_inputs, fn, args, kwargs, True)
        except LearnerError as exc:
            if isinstance(exc.original, RuntimeError) and "leaf Variable" in str(exc.original):
                raise CheckFailure(
                    f"{what} fails when its input requires grad, as in training: {exc.original} "
                    f"({exc.where or 'in your code'}). It changes its input in place. {IN_PLACE_HINT}"
                ) from None
            raise
        _compare_inputs(args, kwargs, leaves, f"{what}, given leaves that require grad,", names)
    return report["result"]


def _outputs(description: Any) -> list[dict]:
    if isinstance(description, dict):
        return [description]
    if isinstance(description, list):
        return [t for part in description for t in _outputs(part)]
    return []


def assert_follows_device_and_dtype(impl, fn, *args, what: str, dtype: torch.dtype | None = torch.float64,
                                    **kwargs) -> None:
    """Call `fn` (an nn.Module is copied and moved with .to()) with every tensor argument on
    the 'meta' device, floating-point ones (and the module) in `dtype`: it must run, and
    return its tensors on meta, floating-point ones in `dtype`. None keeps the dtypes."""
    where = f"on the 'meta' device{f' in {dtype}' if dtype else ''}"
    try:
        try:
            outputs = _outputs(impl.probe(call_moved, fn, args, kwargs, "meta", dtype, True))
        except LearnerError as exc:
            if READS_VALUES not in str(exc.original):
                raise
            # Code that reads a value (.item()) cannot run on meta: its dtypes are checked on the CPU.
            device, where = "cpu", f"on the CPU in {dtype}" if dtype else "on the CPU"
            outputs = _outputs(impl.probe(call_moved, fn, args, kwargs, device, dtype, True))
        else:
            device = "meta"
    except LearnerError as exc:
        text = str(exc.original)
        signs = ("device", "dtype", "scalar type", "Double", "Float")
        if isinstance(exc.original, RuntimeError) and any(sign in text for sign in signs):
            raise CheckFailure(
                f"{what} fails {where} (the grader moves the module and its inputs there, as .to() would move "
                f"them to a GPU): {text.splitlines()[0]} ({exc.where or 'in your code'}). {DEVICE_HINT}"
            ) from None
        raise
    for out in outputs:
        if out["device"] != device:
            raise CheckFailure(f"{what} {where} returned a tensor on {out['device']}, expected {device}: it should "
                               f"follow its input's device. {DEVICE_HINT}")
        if dtype is not None and out["dtype"].startswith("torch.float") and out["dtype"] != str(dtype):
            raise CheckFailure(f"{what} {where} returned a {out['dtype']} tensor, expected {dtype}: it should follow "
                               f"its input's dtype. {DEVICE_HINT}")


def assert_stable(impl, fn, x: torch.Tensor, *args, what: str, scales=(10, 100), rtol: float = 1e-4,
                  atol: float = 1e-5, hint: str = "", **kwargs) -> None:
    """`fn(x * s, *args)` for each scale s: finite, and equal to the same code run in float64
    (its own oracle: in float64 a stable formula gives the same answer, an unstable one the
    answer float32 cannot hold)."""
    for scale in scales:
        big = x * scale
        got = fn(big, *args, **kwargs)
        got = got[0] if isinstance(got, tuple) else got
        if isinstance(got, torch.Tensor) and not torch.isfinite(got).all():
            bad = [int(i) for i in (~torch.isfinite(got)).nonzero()[0]]
            raise CheckFailure(
                f"{what} on inputs {scale}x larger (entries up to {big.abs().max().item():.3g}) gives "
                f"{got[tuple(bad)].item()} at index {bad}.{then_hint(hint)}"
            )
        exact = impl.probe(call_moved, fn, (big, *args), kwargs, "cpu", torch.float64)
        exact = exact[0] if isinstance(exact, tuple) else exact
        if isinstance(got, torch.Tensor) and isinstance(exact, torch.Tensor) and torch.isfinite(exact).all():
            assert_close(got, exact.to(got.dtype), f"{what} on inputs {scale}x larger", rtol=rtol, atol=atol * scale,
                         hint=f"The same code in float64 gives other values.{then_hint(hint)}")


def assert_generator_used(draw: Callable[[torch.Generator | None], Any], what: str, hint: str = "") -> None:
    """`draw(generator)` returns tensors or lists. Two generators seeded alike must give the same
    draws, and generator=None must give different draws on two calls in a row (PyTorch's global
    random numbers move on)."""

    def same(a, b) -> bool:
        if isinstance(a, torch.Tensor):
            return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
        if type(a) in (list, tuple):
            return type(b) is type(a) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        return a == b

    torch.manual_seed(11)
    first = draw(torch.Generator().manual_seed(5))
    torch.manual_seed(12)
    if not same(first, draw(torch.Generator().manual_seed(5))):
        raise CheckFailure(f"{what}: two generators seeded alike gave different draws. Draw only with the generator "
                           f"you are given (generator=generator), not with PyTorch's global random numbers.{then_hint(hint)}")
    if same(draw(None), draw(None)):
        raise CheckFailure(
            f"{what}: with generator=None, two calls in a row gave the same draws. Without a generator, use PyTorch's "
            f"global random numbers (pass generator=None on to torch.multinomial / torch.randint); never make a "
            f"generator with a fixed seed of your own.{then_hint(hint)}"
        )


def expect_raises(call: Callable[[], Any], kind: type[BaseException], what: str, hint: str = "") -> LearnerError:
    """`call()` must raise `kind` (what the docstring promises); returns the error."""
    try:
        got = call()
    except LearnerError as exc:
        if isinstance(exc.original, kind):
            return exc
        said = str(exc.original)[:200]
        raise CheckFailure(
            f"{what} should raise {kind.__name__}, but it raised {type(exc.original).__name__}"
            f"{': ' + said if said else ''} ({exc.where or 'in your code'}).{then_hint(hint)}"
        ) from None
    shown = repr(got)
    raise CheckFailure(f"{what} should raise {kind.__name__}, but it returned {shown[:80]}.{then_hint(hint)}")
