"""Stage 05, public checks: one head of causal self-attention.

Oracle: attention recomputed here in float64 from the learner's own key, query and value
weights (read from the state dict), with PyTorch's scaled_dot_product_attention (the test
may use it; the learner may not). When a value is wrong, the usual bugs are computed from
the same weights too, and the message names the one the learner's output matches.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st

from grader import check
from grader.checks import (
    CheckFailure,
    assert_causal,
    assert_close,
    assert_follows_device_and_dtype,
    assert_gradients_reach,
    gradients_of,
    assert_inputs_unchanged,
    assert_stable,
    cause,
    dependency_map,
    expect_tensor,
    failing_line,
    perturb_vector,
)
from grader.handle import LearnerError
from grader.probes import tensor_layout

# float32 attention against a float64 oracle: outputs are O(1), so a few float32 ulps.
RTOL, ATOL = 1e-4, 1e-5
PROJECTIONS = ("key", "query", "value")


# --- sizes -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    B: int
    T: int
    n_embd: int
    head_size: int
    block_size: int

    def __str__(self) -> str:
        return (f"B={self.B}, T={self.T}, n_embd={self.n_embd}, head_size={self.head_size}, "
                f"block_size={self.block_size}")

    def head(self, impl, dropout: float = 0.0):
        return impl.module("attention").Head(
            n_embd=self.n_embd, head_size=self.head_size, block_size=self.block_size, dropout=dropout
        )

    def x(self, scale: float = 1.0) -> torch.Tensor:
        return torch.randn(self.B, self.T, self.n_embd) * scale


@st.composite
def sizes(draw, max_block: int = 12) -> Sizes:
    block_size = draw(st.integers(1, max_block))
    return Sizes(
        B=draw(st.integers(1, 3)),
        T=draw(st.integers(1, block_size)),
        n_embd=draw(st.integers(1, 16)),
        head_size=draw(st.integers(1, 8)),
        block_size=block_size,
    )


@st.composite
def long_contexts(draw) -> Sizes:
    """block_size > n_embd and n_embd < T <= block_size: where a mask sized by n_embd breaks."""
    n_embd = draw(st.integers(1, 8))
    block_size = draw(st.integers(n_embd + 1, n_embd + 10))
    return Sizes(
        B=draw(st.integers(1, 3)),
        T=draw(st.integers(n_embd + 1, block_size)),
        n_embd=n_embd,
        head_size=draw(st.integers(1, 8)),
        block_size=block_size,
    )


# The cases learners' code most often gets wrong, tried first by every check that draws sizes.
T_IS_1 = Sizes(B=1, T=1, n_embd=8, head_size=4, block_size=8)
T_IS_BLOCK = Sizes(B=2, T=8, n_embd=8, head_size=4, block_size=8)
T_BELOW_BLOCK = Sizes(B=3, T=5, n_embd=16, head_size=5, block_size=9)
BLOCK_ABOVE_EMBD = Sizes(B=2, T=10, n_embd=4, head_size=3, block_size=12)


def with_examples(func):
    for s in (T_IS_1, T_IS_BLOCK, T_BELOW_BLOCK, BLOCK_ABOVE_EMBD):
        func = example(s=s)(func)
    return func


# --- helpers -------------------------------------------------------------------------------------


def find_mask(layout: dict, s: Sizes) -> tuple[str, str, tuple] | None:
    """(kind, name, shape) of the learner's mask: `tril` wherever it lives, else any square 2-D tensor."""
    for kind in ("buffers", "parameters", "attributes"):
        if "tril" in layout[kind]:
            return kind, "tril", layout[kind]["tril"]
    for kind in ("buffers", "attributes", "parameters"):
        for name, shape in layout[kind].items():
            if len(shape) == 2 and shape[0] == shape[1] and not name.endswith("weight"):
                return kind, name, shape
    return None


def mask_size_problem(mask: tuple[str, str, tuple] | None, s: Sizes) -> str:
    """Why a mask of this shape is wrong for these sizes, in a learner's words ('' if it is right)."""
    if mask is None:
        return ""
    _, name, shape = mask
    expected = (s.block_size, s.block_size)
    if tuple(shape) == expected:
        return ""
    side = shape[0] if len(shape) == 2 and shape[0] == shape[1] else None
    by = "n_embd" if side == s.n_embd else "head_size" if side == s.head_size else None
    if by:
        return (
            f"Your mask `{name}` has shape {tuple(shape)}: it is sized by {by} ({side}) instead of by the context "
            f"length block_size ({s.block_size}). It covers only {side} positions, so it seems to work while T <= "
            f"{side} and breaks on longer sequences. Build it from block_size: "
            "torch.tril(torch.ones(block_size, block_size))."
        )
    return f"Your mask `{name}` has shape {tuple(shape)}; expected (block_size, block_size) = {expected}."


def explain_error(impl, head, exc: LearnerError, s: Sizes) -> str:
    """The likely cause of an exception the learner's forward raised for sizes the head must accept,
    read from the line of their code that raised it and from the error itself."""
    try:
        mask = find_mask(impl.probe(tensor_layout, head), s)
    except LearnerError:
        mask = None
    line, text = failing_line(exc), str(exc.original)
    problem = mask_size_problem(mask, s)
    if problem and mask[2] and s.T > mask[2][-1]:  # a mask smaller than T cannot work, whatever line raised
        return cause(problem)
    if isinstance(exc.original, ValueError) and ("raise" in line or "block_size" in text):
        return cause(f"T={s.T} is at most block_size={s.block_size}, so the head must accept it: reject only "
                     "T > block_size (with >, not >=).")
    mismatch = re.findall(r"size of tensor \w \((\d+)\)", text)  # PyTorch's broadcasting error
    shape_error = bool(mismatch) or any(word in text for word in ("shape", "size", "dimension"))
    name = mask[1] if mask is not None else None
    on_mask_line = name is not None and re.search(rf"\b{re.escape(name)}\b", line)
    sliced = on_mask_line and re.search(rf"\b{re.escape(name)}\b\s*\[", line)
    if shape_error and sliced:
        return cause(f"`{line}` slices the mask `{name}`, but not to this sequence's length T={s.T}: the scores are "
                     f"(B, T, T), so take self.{name}[:T, :T].")
    if shape_error and name is not None and s.T < s.block_size and (on_mask_line or str(s.block_size) in mismatch):
        return cause(
            f"{f'`{line}` uses' if on_mask_line else 'Your code uses'} the whole mask `{name}`: it covers "
            f"block_size={s.block_size} positions, but this sequence has only T={s.T}. Slice it to the current "
            f"length, self.{name}[:T, :T], so that it matches the (T, T) scores."
        )
    if shape_error:
        return ("Follow the shapes: x is (B, T, C); q, k and v are (B, T, head_size); the scores q @ k.transpose(-2, "
                "-1) are (B, T, T); the output is (B, T, head_size).")
    return ""


def run(impl, head, x: torch.Tensor, s: Sizes, what: str = "Head(x)") -> torch.Tensor:
    """head(x), checked for shape and dtype; a learner exception becomes a message with its likely cause."""
    try:
        out = head(x)
    except LearnerError as exc:
        raise CheckFailure(f"{exc.describe()}\nSizes: {s}.\n{explain_error(impl, head, exc, s)}".rstrip()) from None
    return expect_tensor(
        out, f"{what} for x of shape {tuple(x.shape)} (head_size={s.head_size})", (s.B, s.T, s.head_size),
        torch.float32, hint="The output has one head_size-wide vector per position: (B, T, head_size).",
    )


def weights(head, s: Sizes) -> dict[str, torch.Tensor]:
    """The learner's query, key and value weights from its state dict, each (head_size, n_embd)."""
    state = head.state_dict()
    missing = [f"{p}.weight" for p in PROJECTIONS if f"{p}.weight" not in state]
    if missing:
        raise CheckFailure(
            f"Head's state_dict has no {', '.join(missing)}; it has {sorted(state)}. Name the three projections "
            "key, query and value: self.key = nn.Linear(n_embd, head_size, bias=False), and the same for the others."
        )
    biases = [f"{p}.bias" for p in PROJECTIONS if f"{p}.bias" in state]
    if biases:
        raise CheckFailure(
            f"Head's state_dict has {', '.join(biases)}: the projections have a bias. "
            "Create them with nn.Linear(n_embd, head_size, bias=False)."
        )
    out = {}
    for p in PROJECTIONS:
        out[p] = expect_tensor(
            state[f"{p}.weight"], f"{p}.weight", (s.head_size, s.n_embd), torch.float32,
            hint=f"nn.Linear(n_embd, head_size) stores its weight as (head_size, n_embd) = ({s.head_size}, {s.n_embd}).",
        )
    return out


def oracle(x: torch.Tensor, w: dict[str, torch.Tensor]) -> torch.Tensor:
    """Causal attention in float64 by PyTorch's own kernel (default scale: 1/sqrt(head_size))."""
    x = x.double()
    q, k, v = (x @ w[p].double().T for p in ("query", "key", "value"))
    return F.scaled_dot_product_attention(q, k, v, is_causal=True).float()


def attention_variant(x, w, scale=None, fill=float("-inf"), dim=-1, keep="past", swap=False, mask_after=False):
    """Attention with one of the usual bugs, in float64; the defaults give the right answer."""
    x = x.double()
    q, k, v = (x @ w[p].double().T for p in ("query", "key", "value"))
    if swap:
        q, k = k, q
    T, hs = x.shape[1], q.shape[-1]
    scores = q @ k.transpose(-2, -1) * (hs**-0.5 if scale is None else scale)
    ones = torch.ones(T, T, dtype=torch.float64)
    visible = {"past": torch.tril(ones), "strict": torch.tril(ones, -1), "future": torch.triu(ones),
               "strict_future": torch.triu(ones, 1), "all": ones}[keep]
    if mask_after:
        wei = torch.softmax(scores, dim=-1).masked_fill(visible == 0, 0.0)
    else:
        wei = torch.softmax(scores.masked_fill(visible == 0, fill), dim=dim)
    return (wei @ v).float()


def usual_bugs(x, w, s: Sizes):
    """(hint, what that bug returns) for the bugs learners write, computed lazily."""
    hs, C = s.head_size, s.n_embd
    yield (
        f"Your scores are scaled by C ** -0.5 = 1/sqrt({C}), the embedding width, instead of head_size ** -0.5 = "
        f"1/sqrt({hs}). Each score sums head_size products, so divide by sqrt(head_size).",
        attention_variant(x, w, scale=C**-0.5),
    )
    yield (
        "Your scores are not scaled at all: multiply q @ k.transpose(-2, -1) by head_size ** -0.5.",
        attention_variant(x, w, scale=1.0),
    )
    yield (
        "Your scores are divided by head_size instead of its square root: multiply by head_size ** -0.5.",
        attention_variant(x, w, scale=1.0 / hs),
    )
    yield (
        "Your queries and keys are swapped: you compute k @ q^T, the transpose of the score matrix. Row i must "
        "hold query i against every key: q @ k.transpose(-2, -1), with q = self.query(x) and k = self.key(x).",
        attention_variant(x, w, swap=True),
    )
    yield (
        "Your softmax normalizes over dim=1, the query positions, instead of the last dimension (the keys): each "
        "row of attention weights must sum to 1. Use F.softmax(wei, dim=-1).",
        attention_variant(x, w, dim=1),
    )
    yield (
        "Your mask fills the future with 0 instead of -inf: a score of 0 still gets weight exp(0) after the "
        "softmax, so the future leaks in. Use wei.masked_fill(self.tril[:T, :T] == 0, float('-inf')).",
        attention_variant(x, w, fill=0.0),
    )
    yield (
        "No causal mask reaches your scores: every position sees the whole sequence, future included. Mask "
        "them before the softmax: wei = wei.masked_fill(self.tril[:T, :T] == 0, float('-inf')) (masked_fill "
        "returns a new tensor; keep it).",
        attention_variant(x, w, keep="all"),
    )
    yield (
        "Your mask is upside down: it keeps the future (j >= i) and hides the past. torch.tril keeps j <= i; "
        "mask where tril == 0.",
        attention_variant(x, w, keep="future"),
    )
    yield (
        "Your mask is inverted: it hides the past and the diagonal and keeps only the future (j > i), as "
        "masked_fill(tril == 1, float('-inf')) does: that fills where tril keeps. The last position then sees "
        "nothing at all, and a softmax over nothing but -inf is NaN. Fill where the mask is 0: "
        "wei.masked_fill(self.tril[:T, :T] == 0, float('-inf')).",
        attention_variant(x, w, keep="strict_future"),
    )
    yield (
        "Your mask hides the diagonal too (tril(..., diagonal=-1), or < instead of <=): position 0 then sees no "
        "position at all, and a softmax over nothing but -inf is NaN. Each position must see itself and the past.",
        attention_variant(x, w, keep="strict"),
    )
    yield (
        "You mask after the softmax: the weights that remain no longer sum to 1, and the softmax still divided by "
        "the future's scores. Mask the scores with -inf before the softmax.",
        attention_variant(x, w, mask_after=True),
    )


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Exactly equal, NaN included (a NaN from a bug must not look like randomness)."""
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())


def likely_bug(out, x, w, s: Sizes, default: str, again=None) -> str:
    """The hint to show when `out` is not the right attention."""
    expected = oracle(x, w)
    if torch.allclose(out.double(), expected.double(), rtol=RTOL, atol=ATOL):
        return default
    if again is not None and not same(out, again()):
        return cause("Two calls with the same x in train mode gave different outputs although dropout=0.0: your "
                     "dropout does not use the dropout argument (nn.Dropout() alone defaults to p=0.5). Use "
                     "nn.Dropout(dropout).")
    for hint, value in usual_bugs(x, w, s):
        if torch.allclose(out.double(), value.double(), rtol=RTOL, atol=ATOL, equal_nan=True):
            return cause(hint)
    return default


# Named in other checks' messages, which send the learner to this check's diagnosis.
VALUES_TITLE = "Head(x) equals masked softmax(q k^T / sqrt(head_size)) v, computed from your own weights"
DROPOUT_MODES_TITLE = "dropout is active in train mode and off in eval mode"

VALUE_HINT = ("Compute q = self.query(x), k = self.key(x), v = self.value(x); scores q @ k.transpose(-2, -1) * "
              "head_size ** -0.5; mask where self.tril[:T, :T] == 0 with -inf; softmax over dim=-1; dropout; @ v.")
CAUSAL_HINT = ("The mask must hide every j > i before the softmax: wei.masked_fill(self.tril[:T, :T] == 0, "
               "float('-inf')), then F.softmax(wei, dim=-1).")


# --- checks ----------------------------------------------------------------------------------------


@check("Head(x) returns (B, T, head_size) float32 for every T up to block_size", points=2)
@settings(max_examples=12)
@given(s=sizes())
@with_examples
def output_shape(impl, s):
    head = s.head(impl)
    run(impl, head, s.x(), s)


@check("the mask is a buffer `tril` of shape (block_size, block_size), next to key, query and value", points=2)
@settings(max_examples=10)
@given(s=sizes())
@example(s=BLOCK_ABOVE_EMBD)
@example(s=Sizes(B=1, T=3, n_embd=10, head_size=4, block_size=6))
def state_dict_layout(impl, s):
    head = s.head(impl)
    layout = impl.probe(tensor_layout, head)
    register = "self.register_buffer('tril', torch.tril(torch.ones(block_size, block_size)))"
    if "tril" in layout["parameters"]:
        raise CheckFailure(
            f"`tril` is a parameter of your Head (nn.Parameter), so the optimizer would train your mask. Make it a "
            f"buffer instead, saved with the model but never trained: {register}."
        )
    if "tril" not in layout["buffers"]:
        if "tril" in layout["attributes"]:
            raise CheckFailure(
                "`tril` is a plain tensor attribute (self.tril = ...), not a buffer: it is missing from state_dict "
                f"and stays behind on the CPU when the model moves with .to(device). Register it: {register}."
            )
        found = find_mask(layout, s)
        also = f" (your mask seems to be `{found[1]}`)" if found else ""
        raise CheckFailure(
            f"Your Head has no buffer named `tril`{also}; its buffers are {sorted(layout['buffers']) or 'none'}. "
            f"The grader finds the mask by that name: {register}."
        )
    if "tril" not in layout["state_dict"]:
        raise CheckFailure(
            "`tril` is a buffer but not in state_dict (registered with persistent=False). Register it as a plain "
            f"buffer, which a saved model keeps: {register}."
        )
    shape = layout["state_dict"]["tril"]
    problem = mask_size_problem(("buffers", "tril", shape), s)
    if problem:
        raise CheckFailure(f"Sizes: {s}.\n{cause(problem)}")
    weights(head, s)  # key, query and value: names, shapes, no bias
    extra = sorted(set(layout["parameters"]) - {f"{p}.weight" for p in PROJECTIONS})
    if extra:
        raise CheckFailure(
            f"Your Head has parameters besides key.weight, query.weight and value.weight: {extra}. "
            "One head has exactly those three weight matrices."
        )


@check("sequences longer than n_embd work when block_size > n_embd (mask sized by block_size)", points=2)
@settings(max_examples=10)
@given(s=long_contexts())
@example(s=BLOCK_ABOVE_EMBD)
def long_context(impl, s):
    head = s.head(impl)
    run(impl, head, s.x(), s)
    problem = mask_size_problem(find_mask(impl.probe(tensor_layout, head), s), s)
    if problem:
        raise CheckFailure(f"Sizes: {s}.\n{cause(problem)}")


@check(VALUES_TITLE, points=3)
@settings(max_examples=12)
@given(s=sizes())
@with_examples
def values_match_oracle(impl, s):
    head = s.head(impl)
    x = s.x()
    out = run(impl, head, x, s)
    w = weights(head, s)
    hint = likely_bug(out, x, w, s, VALUE_HINT, again=lambda: run(impl, head, x, s))
    assert_close(out, oracle(x, w), f"Head(x) (sizes: {s})", rtol=RTOL, atol=ATOL, hint=hint)


@check("the scores are scaled by head_size ** -0.5 (not by C ** -0.5, not unscaled)", points=2)
def scaling(impl):
    for s in (Sizes(B=2, T=8, n_embd=32, head_size=4, block_size=8), Sizes(B=2, T=6, n_embd=6, head_size=24, block_size=6)):
        head = s.head(impl).eval()
        x = s.x(scale=2.0)  # wide scores, so the scalings give clearly different weights
        out = run(impl, head, x, s)
        w = weights(head, s)
        hs, C = s.head_size, s.n_embd
        # (what the scale is, the scale, why it is wrong); the right one first.
        scalings = [
            (f"head_size ** -0.5 = 1/sqrt({hs})", hs**-0.5, ""),
            (f"C ** -0.5 = 1/sqrt({C})", C**-0.5,
             f"your output matches scores scaled by C ** -0.5, the embedding width ({C}), instead of head_size ** "
             f"-0.5 ({hs}). A lecture's code did this too; it only gives the right answer when C == head_size. Each "
             "score sums head_size products q_i * k_i, so its spread grows like sqrt(head_size): scale by "
             "k.shape[-1] ** -0.5."),
            ("1 (no scaling)", 1.0,
             "your scores are not scaled at all. Multiply q @ k.transpose(-2, -1) by head_size ** -0.5: without it "
             "the scores grow with the head size, the softmax saturates toward one-hot, and gradients vanish."),
            (f"1 / head_size = 1/{hs}", 1.0 / hs,
             "your scores are divided by head_size instead of sqrt(head_size): use head_size ** -0.5."),
            (f"head_size ** 0.5 = sqrt({hs})", hs**0.5,
             "your scores are multiplied by sqrt(head_size) instead of divided by it: use head_size ** -0.5."),
        ]
        matches = [
            (name, why) for name, scale, why in scalings
            if torch.allclose(out.double(), attention_variant(x, w, scale=scale).double(), rtol=RTOL, atol=ATOL)
        ]
        if matches and not matches[0][1]:
            continue
        if not matches:
            raise CheckFailure(
                f"With n_embd={C} and head_size={hs}, your output matches none of the scalings tried "
                f"({', '.join(name for name, _, _ in scalings)}), so something else is wrong too: fix the check "
                f"\"{VALUES_TITLE}\" first, whose message names the likely cause."
            )
        reason = matches[0][1]
        raise CheckFailure(f"With n_embd={C} and head_size={hs}, the scores are scaled wrongly.\n"
                           f"{cause(reason[0].upper() + reason[1:])}")


@check("each position's output depends only on itself and earlier positions", points=3)
@settings(max_examples=4)
@given(s=sizes(max_block=9).filter(lambda s: s.T > 1))
@example(s=Sizes(B=2, T=7, n_embd=8, head_size=4, block_size=7))
@example(s=Sizes(B=1, T=6, n_embd=4, head_size=5, block_size=10))
def causal(impl, s):
    head = s.head(impl).eval()
    x = s.x()
    deps = dependency_map(lambda inp: run(impl, head, inp, s), x, perturb_vector)
    hint = likely_bug(run(impl, head, x, s), x, weights(head, s), s, CAUSAL_HINT)
    assert_causal(deps, f"Head(x) (sizes: {s})", hint=hint, require_self=True)


@check("not even a rounding error flows from a later input to an output (so no gradient does)", points=2)
@settings(max_examples=3)
@given(s=sizes(max_block=9).filter(lambda s: s.T > 1))
@example(s=Sizes(B=2, T=6, n_embd=8, head_size=4, block_size=8))
def gradient_causal(impl, s):
    head = s.head(impl).eval()
    x = s.x()
    out = run(impl, head, x, s)
    deps = dependency_map(lambda inp: run(impl, head, inp, s), x, perturb_vector, exact=True)
    default = ("Your outputs are right, yet later positions still move earlier outputs by rounding errors, so a "
               "(tiny) gradient flows to the future: it is multiplied away instead of masked, for example by a "
               "softmax followed by multiplying with the mask and renormalizing. Mathematically it cancels; "
               "numerically it does not. Mask the scores with -inf before the softmax, so that the future's "
               "weights and gradients are exactly zero.")
    w = weights(head, s)
    if not torch.allclose(out.double(), oracle(x, w).double(), rtol=RTOL, atol=ATOL):
        default = CAUSAL_HINT
    hint = likely_bug(out, x, w, s, default)
    assert_causal(deps, f"Head(x) (sizes: {s})", hint=hint, require_self=True, exact=True)


@check("gradients reach the key, query and value weights", points=1)
def gradients_reach(impl):
    s = Sizes(B=2, T=5, n_embd=8, head_size=4, block_size=8)
    head = s.head(impl)
    try:
        grads = gradients_of(impl, head, s.x(), what="Head")
    except LearnerError as exc:
        raise CheckFailure(f"{exc.describe()}\nSizes: {s}.\n{explain_error(impl, head, exc, s)}".rstrip()) from None
    wanted = [f"{p}.weight" for p in PROJECTIONS]
    missing = [name for name in wanted if name not in grads]
    if missing:
        raise CheckFailure(f"Head has no parameter {', '.join(missing)}; it has {sorted(grads)}. Name the three "
                           "projections key, query and value.")
    assert_gradients_reach({name: grads[name] for name in wanted}, "Head")


@check(DROPOUT_MODES_TITLE, points=2)
def dropout_modes(impl):
    s = Sizes(B=4, T=6, n_embd=8, head_size=4, block_size=8)
    head = s.head(impl, dropout=0.5)
    x = s.x()
    head.train()
    first, second = run(impl, head, x, s, "Head(x) in train mode"), run(impl, head, x, s, "Head(x) in train mode")
    head.eval()
    third, fourth = run(impl, head, x, s, "Head(x) in eval mode"), run(impl, head, x, s, "Head(x) in eval mode")
    w = weights(head, s)
    if not same(third, fourth):
        raise CheckFailure(
            "In eval mode two calls with the same x gave different outputs: your dropout is still on. Dropout must "
            "follow the module's mode: use self.dropout = nn.Dropout(dropout) (it switches off in eval()), or "
            "F.dropout(wei, p, training=self.training), never training=True."
        )
    hint = likely_bug(third, x, w, s, "In eval mode dropout does nothing, so the output must be the attention "
                      f"without dropout. If the check \"{VALUES_TITLE}\" fails too, fix that first.")
    assert_close(third, oracle(x, w), "Head(x) in eval mode with dropout=0.5", rtol=RTOL, atol=ATOL, hint=hint)
    if same(first, second) or torch.allclose(first, third, rtol=RTOL, atol=ATOL):
        raise CheckFailure(
            "In train mode with dropout=0.5, two calls with the same x gave "
            + ("identical outputs" if same(first, second) else "the eval-mode output")
            + ": dropout is not active. Apply self.dropout = nn.Dropout(dropout) to the attention weights, "
            "after the softmax and before multiplying by v."
        )


@check("dropout drops attention weights (after the softmax) and rescales by 1/(1-p)", points=1)
def dropout_on_weights(impl):
    # With T=1 each row has a single attention weight, 1. Dropping it zeroes the whole output
    # row; keeping it gives the eval-mode output / (1 - p). Dropout elsewhere leaves other traces.
    p = 0.5
    s = Sizes(B=64, T=1, n_embd=8, head_size=6, block_size=4)
    head = s.head(impl, dropout=p)
    x = s.x()
    head.eval()
    plain = run(impl, head, x, s, "Head(x) in eval mode")
    if not torch.isfinite(plain).all():
        raise CheckFailure(
            "With T=1, your head returns NaN or inf even in eval mode, where dropout is off: the one position "
            f"must see itself. Fix the check \"{VALUES_TITLE}\" first; its message names the likely cause."
        )
    if not same(plain, run(impl, head, x, s, "Head(x) in eval mode")):
        raise CheckFailure(
            "In eval mode two calls with the same x gave different outputs: your dropout is still on in eval mode "
            f"(see the check \"{DROPOUT_MODES_TITLE}\"). Use nn.Dropout(dropout), which follows train() and eval()."
        )
    head.train()
    out = run(impl, head, x, s, "Head(x) in train mode")
    dropped = out.abs().amax(dim=-1) == 0
    kept = torch.isclose(out, plain / (1 - p), rtol=RTOL, atol=ATOL).all(dim=-1)
    if (dropped | kept).all() and dropped.any() and kept.any():
        return
    if torch.isclose(out, plain, rtol=RTOL, atol=ATOL).all():
        reason = ("every output equals the eval-mode output, as if nothing were dropped: dropout runs before the "
                  "softmax (the softmax of a single score is 1 whatever dropout did to it) or not at all. Apply it "
                  "to the attention weights after the softmax.")
    elif ((out == 0) | torch.isclose(out, plain / (1 - p), rtol=RTOL, atol=ATOL)).all():
        reason = ("single numbers of the output are zeroed, not whole rows: dropout acts on the output (wei @ v) "
                  "instead of on the attention weights. Apply it to wei, before multiplying by v.")
    elif (dropped | torch.isclose(out, plain, rtol=RTOL, atol=ATOL).all(dim=-1)).all():
        reason = ("the rows you keep are not rescaled by 1 / (1 - p). nn.Dropout does that (inverted dropout), so "
                  "the expected output stays the same.")
    else:
        bad = int((~(dropped | kept)).nonzero()[0, 0]) if not (dropped | kept).all() else 0
        reason = (f"row {bad} is {out[bad, 0, :3].tolist()}..., neither zero nor the eval-mode output / (1 - p), "
                  f"{(plain[bad, 0, :3] / (1 - p)).tolist()}... Apply nn.Dropout(dropout) to the attention "
                  "weights after the softmax.")
    raise CheckFailure(
        f"With T=1 and dropout={p} in train mode, each output row should be either all zero (its one attention "
        f"weight dropped) or the eval-mode output / (1 - p) (kept); {int(dropped.sum())} of {s.B} rows were zero "
        f"and {int(kept.sum())} were rescaled.\n{cause(reason[0].upper() + reason[1:])}"
    )


@check("Head(x) rejects T > block_size with a ValueError", points=1)
@settings(max_examples=5)
@given(block_size=st.integers(1, 8), extra=st.integers(1, 4))
@example(block_size=8, extra=1)
def rejects_long_context(impl, block_size, extra):
    s = Sizes(B=2, T=block_size + extra, n_embd=8, head_size=4, block_size=block_size)
    head = s.head(impl)
    how = ("Check the length first in forward: if T > block_size: raise ValueError(f\"T={T} is longer than "
           "block_size={block_size}\"). The mask has only block_size rows.")
    try:
        out = head(s.x())
    except LearnerError as exc:
        if isinstance(exc.original, ValueError):
            return
        raise CheckFailure(
            f"For T={s.T} > block_size={block_size}, Head(x) raised {type(exc.original).__name__} "
            f"({str(exc.original).strip()[:120]}) instead of a ValueError that says what is wrong. {how}"
        ) from None
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    problem = mask_size_problem(find_mask(impl.probe(tensor_layout, head), s), s)
    raise CheckFailure(
        f"For T={s.T} > block_size={block_size}, Head(x) returned {shape} instead of raising a ValueError: "
        f"a head built for block_size={block_size} has no mask for longer sequences. {how}"
        + (f"\n{problem}" if problem else "")
    )


# --- general properties (grader/checks/properties.py) -----------------------------------------


@check("Head(x) leaves x unchanged, even when x requires grad", points=1)
def inputs_unchanged(impl):
    head = T_BELOW_BLOCK.head(impl)
    assert_inputs_unchanged(impl, head, T_BELOW_BLOCK.x(), what="Head(x)", names=("x",))


@check("Head(x) follows x's device and dtype (meta, float64): no tensor made on a fixed device in forward", points=1)
def follows_device_and_dtype(impl):
    head = BLOCK_ABOVE_EMBD.head(impl)
    assert_follows_device_and_dtype(impl, head, BLOCK_ABOVE_EMBD.x(), what="Head(x)")


@check("Head(x) stays finite and correct on large activations (x times 10 and 100)", points=1)
def stable_on_large_inputs(impl):
    head = T_IS_BLOCK.head(impl)
    head.eval()
    assert_stable(
        impl, head, T_IS_BLOCK.x(), what="Head(x)", rtol=1e-3, atol=1e-4,
        hint="Large scores overflow exp(): use F.softmax (or your stage 04 softmax), which subtracts each row's "
        "max first.",
    )
