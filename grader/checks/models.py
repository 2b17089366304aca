"""Checks on whole models: the learner's and the reference's with the same weights."""
from __future__ import annotations

from typing import Callable

import torch

from ..registry import CheckFailure
from .values import assert_close, expect_tensor


def model_outputs(model, idx: torch.Tensor, *args, what: str = "model(idx)", hint: str = "", **kwargs):
    """`model(idx, *args, **kwargs)`, checked to be a pair (logits, loss) whose logits are
    (B, T, model.config.vocab_size) float32; returns the pair."""
    out = model(idx, *args, **kwargs)
    if type(out) is not tuple or len(out) != 2:
        got = f"a {type(out).__name__} of length {len(out)}" if type(out) in (tuple, list) else f"a {type(out).__name__}"
        raise CheckFailure(f"{what} should return a pair (logits, loss), but it returned {got}.")
    expect_tensor(out[0], f"the logits of {what}", (*idx.shape, model.config.vocab_size), torch.float32, hint=hint)
    return out


def greedy_continuation(model, idx: torch.Tensor, steps: int, context: int | None = None) -> torch.Tensor:
    """What greedy decoding must give, computed here with one forward of `model` per new token
    (the input cropped to its last `context` tokens when given): the oracle for `generate`."""
    for _ in range(steps):
        logits = model_outputs(model, idx if context is None else idx[:, -context:])[0]
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx


def share_weights(ours, theirs, what: str, names_hint: str, private: str = ".attn.") -> None:
    """Load `theirs`' state dict into `ours` (both models, handles or not) and put both in eval
    mode. Entries whose name contains `private` (an attention's causal-mask buffer, which
    an earlier stage decided) are shared where both have them; any other name that one model
    has and the other lacks fails the check with `names_hint`."""
    weights, own = theirs.state_dict(), ours.state_dict()
    unknown = sorted(k for k in own if k not in weights and private not in k)
    missing = sorted(k for k in weights if k not in own and private not in k)
    if unknown or missing:
        raise CheckFailure(
            f"{what}'s state_dict differs from the reference's: extra {unknown[:4]}, missing {missing[:4]}. {names_hint}"
        )
    ours.load_state_dict({k: v for k, v in weights.items() if k in own}, strict=False)
    ours.eval()
    theirs.eval()


def assert_same_language_model(
    ours, theirs, vocab_size: int, batch: int, T: int, seed: int, hint: str | Callable[[torch.Tensor, torch.Tensor], str]
) -> None:
    """`ours(idx, targets)` and `theirs(idx, targets)` on the same random tokens: the logits
    and the float32 scalar loss must agree (two models given the same weights). `hint` may be
    a function of (idx, our logits), called only when the logits differ, to diagnose them."""
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, vocab_size, (batch, T), generator=gen)
    targets = torch.randint(0, vocab_size, (batch, T), generator=gen)
    logits, loss = ours(idx, targets)
    ref_logits, ref_loss = theirs(idx, targets)
    if callable(hint):
        expect_tensor(logits, "logits", tuple(ref_logits.shape), ref_logits.dtype)
        same = torch.allclose(logits.double(), ref_logits.double(), rtol=1e-4, atol=1e-5, equal_nan=True)
        hint = "" if same else hint(idx, logits)
    assert_close(logits, ref_logits, "logits", rtol=1e-4, atol=1e-5, hint=hint)
    expect_tensor(loss, "loss", (), torch.float32)
    assert_close(loss, ref_loss, "loss", rtol=1e-5, atol=1e-6)
