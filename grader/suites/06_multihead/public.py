"""Stage 06, public checks: batched multi-head causal self-attention.

Oracle: the attention recomputed here in float64 from the weights the test gives the
learner's c_attn and c_proj, with PyTorch's scaled_dot_product_attention(is_causal=True)
for the heads (the test may use it; the learner may not). When a value is wrong, the usual
bugs are computed from the same weights as well, and the message names the one the
learner's output matches.
"""
from __future__ import annotations

import math
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
    perturb_vector,
)
from grader.handle import LearnerError, ObjectHandle
from grader.probes import set_parameter, tensor_layout

# float32 attention against a float64 oracle: outputs are O(1), so a few float32 ulps.
RTOL, ATOL = 1e-4, 1e-5
NAMES = ("c_attn.weight", "c_attn.bias", "c_proj.weight", "c_proj.bias")


# --- sizes -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    B: int
    T: int
    n_head: int
    head_size: int
    block_size: int
    bias: bool = True

    @property
    def C(self) -> int:
        return self.n_head * self.head_size

    def __str__(self) -> str:
        return (f"B={self.B}, T={self.T}, n_embd={self.C}, n_head={self.n_head} (head size {self.head_size}), "
                f"block_size={self.block_size}, bias={self.bias}")


@st.composite
def sizes(draw, max_block: int = 12) -> Sizes:
    """Odd head counts, head sizes from 1, T = 1, T = block_size or in between, blocks wider than C."""
    block_size = draw(st.integers(1, max_block))
    return Sizes(
        B=draw(st.integers(1, 3)),
        T=draw(st.sampled_from([1, block_size, max(1, (block_size + 1) // 2)])),
        n_head=draw(st.sampled_from([1, 2, 3, 4, 5, 7])),
        head_size=draw(st.integers(1, 4)),
        block_size=block_size,
        bias=draw(st.booleans()),
    )


# The cases learners' code most often gets wrong, tried first by every check that draws sizes.
THREE_HEADS = Sizes(B=2, T=6, n_head=3, head_size=2, block_size=6)
BLOCK_ABOVE_EMBD = Sizes(B=1, T=16, n_head=5, head_size=2, block_size=16)  # C = 10 < T
T_BELOW_BLOCK = Sizes(B=3, T=5, n_head=7, head_size=3, block_size=9, bias=False)
T_IS_1 = Sizes(B=1, T=1, n_head=3, head_size=3, block_size=8)


def with_examples(func=None, **more):
    """Try the edge cases first; `more` gives the check's other arguments for them."""
    if func is None:
        return lambda f: with_examples(f, **more)
    for s in (T_IS_1, T_BELOW_BLOCK, BLOCK_ABOVE_EMBD, THREE_HEADS):
        func = example(s=s, **more)(func)
    return func


# --- helpers -------------------------------------------------------------------------------------


def draw_weights(s: Sizes, seed: int) -> dict[str, torch.Tensor | None]:
    """Weights that make q . k / sqrt(hs) of order 1, so every bug moves the output clearly."""
    gen = torch.Generator().manual_seed(seed)
    C = s.C
    return {
        "c_attn.weight": torch.randn(3 * C, C, generator=gen) * 1.2 / math.sqrt(C),
        "c_attn.bias": torch.randn(3 * C, generator=gen) * 0.3 if s.bias else None,
        "c_proj.weight": torch.randn(C, C, generator=gen) / math.sqrt(C),
        "c_proj.bias": torch.randn(C, generator=gen) * 0.3 if s.bias else None,
    }


def expect_parameters(model, s: Sizes) -> None:
    """c_attn and c_proj, with GPT-2's names and shapes, biases exactly when bias=True."""
    state = model.state_dict()
    if not isinstance(state, dict):
        raise CheckFailure(f"state_dict() returned a {type(state).__name__}; keep nn.Module's own state_dict.")
    C = s.C
    shapes = {"c_attn.weight": (3 * C, C), "c_attn.bias": (3 * C,), "c_proj.weight": (C, C), "c_proj.bias": (C,)}
    found = {name: tuple(t.shape) for name, t in state.items() if isinstance(t, torch.Tensor)}
    for name, shape in shapes.items():
        wanted = s.bias or name.endswith("weight")
        if wanted and name not in found:
            raise CheckFailure(
                f"CausalSelfAttention(n_embd={C}, n_head={s.n_head}, ..., bias={s.bias}) has no {name} in its state "
                f"dict; it has {sorted(found)}. Name the layers as GPT-2 does: self.c_attn = nn.Linear(n_embd, "
                "3 * n_embd, bias=bias) and self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)."
            )
        if not wanted and name in found:
            raise CheckFailure(
                f"With bias=False, {name} should not exist, but the state dict has it: pass bias=bias to nn.Linear."
            )
        if wanted and found[name] != shape:
            raise CheckFailure(
                f"{name} has shape {found[name]}, expected {shape} for n_embd={C}: c_attn maps C to 3C "
                "(q, k and v of every head at once), c_proj maps C to C."
            )


def build(impl, s: Sizes, seed: int = 0, dropout: float = 0.0, train: bool = False):
    """The learner's module for these sizes, with test-chosen weights; (model, weights)."""
    model = impl.module("multihead").CausalSelfAttention(s.C, s.n_head, s.block_size, dropout=dropout, bias=s.bias)
    expect_parameters(model, s)
    weights = draw_weights(s, seed)
    for name, value in weights.items():
        if value is not None:
            impl.probe(set_parameter, model, name, value)
    model.train() if train else model.eval()
    return model, weights


def forward(impl, model, x: torch.Tensor, s: Sizes) -> torch.Tensor:
    """model(x), with the usual crashes explained."""
    try:
        out = model(x)
    except LearnerError as exc:
        raise CheckFailure(f"{exc.describe()}\nWith {s}.\n{explain_error(impl, model, exc, s)}".rstrip()) from None
    expect_tensor(out, f"CausalSelfAttention(x) for x of shape {tuple(x.shape)}", tuple(x.shape), torch.float32,
                  hint="The output has the input's shape (B, T, C): merge the heads back into C channels.")
    return out


def find_mask(layout: dict, s: Sizes) -> tuple[str, str, tuple] | None:
    """(kind, name, shape) of the learner's mask: the tensor, not a weight, whose last two sizes are equal."""
    for kind in ("buffers", "attributes", "parameters"):
        for name, shape in layout[kind].items():
            if len(shape) >= 2 and shape[-1] == shape[-2] and not name.endswith(("weight", "bias")):
                return kind, name, shape
            if name.endswith("bias") and not name.startswith(("c_attn", "c_proj")) and len(shape) >= 2:
                return kind, name, shape  # nanoGPT calls its mask `bias`
    return None


def mask_size_problem(mask: tuple[str, str, tuple] | None, s: Sizes) -> str:
    """Why a mask of this shape is wrong for these sizes, in a learner's words ('' if it is right)."""
    if mask is None:
        return ""
    _, name, shape = mask
    side = shape[-1]
    if side == s.block_size:
        return ""
    by = "n_embd" if side == s.C else "the head size" if side == s.head_size else "n_head" if side == s.n_head else None
    if by:
        return (
            f"Your mask `{name}` has shape {tuple(shape)}: it is sized by {by} ({side}) instead of by the context "
            f"length block_size ({s.block_size}). It covers only {side} positions, so it seems to work while T <= "
            f"{side} and breaks on longer sequences. Build it from block_size: "
            "torch.tril(torch.ones(block_size, block_size))."
        )
    return f"Your mask `{name}` has shape {tuple(shape)}; expected (block_size, block_size) = {(s.block_size,) * 2}."


def works_at_block_size(model, s: Sizes) -> bool:
    try:
        model(torch.randn(s.B, s.block_size, s.C))
    except LearnerError:
        return False
    return True


def explain_error(impl, model, exc: LearnerError, s: Sizes) -> str:
    """The likely cause of an exception raised by a forward that had to work."""
    text = str(exc.original)
    if "view size is not compatible" in text:
        return cause("view only reinterprets memory that is already in order. To split, use "
                     "q.view(B, T, nh, hs).transpose(1, 2) (a bare q.view(B, nh, T, hs) would have the wrong contents "
                     "anyway). To merge, the transposed result is out of order: y.transpose(1, 2).contiguous()"
                     ".view(B, T, C).")
    try:
        problem = mask_size_problem(find_mask(impl.probe(tensor_layout, model), s), s)
    except LearnerError:
        problem = ""
    if problem:
        return cause(problem)
    if s.T < s.block_size and works_at_block_size(model, s):
        return cause(f"The same module works for T = block_size = {s.block_size} but not for T = {s.T}: the "
                     "scores are (B, nh, T, T), so slice the (block_size, block_size) mask to the current length: "
                     "tril[:T, :T].")
    if "shape" in text or "size" in text:
        return ("Check each shape on the way: c_attn(x) is (B, T, 3C); split(C, dim=2) gives q, k, v of (B, T, C); "
                "view(B, T, nh, hs).transpose(1, 2) gives (B, nh, T, hs); the scores are (B, nh, T, T).")
    return ""


# --- the oracle and the usual bugs -------------------------------------------------------------------


def attention(x: torch.Tensor, w: dict, n_head: int, *, order=(0, 1, 2), split="transpose", merge="transpose",
              scale="head", mask="-inf", softmax_dim=-1, project=True) -> torch.Tensor:
    """Multi-head attention in float64 from the weights `w`, or one of its usual bugs.

    The correct computation (every option at its default) uses PyTorch's
    scaled_dot_product_attention; each option names a way to get a step wrong.
    """
    x = x.double()
    B, T, C = x.shape
    hs = C // n_head
    bias = w["c_attn.bias"].double() if w["c_attn.bias"] is not None else None
    qkv = F.linear(x, w["c_attn.weight"].double(), bias).split(C, dim=2)
    q, k, v = (qkv[i] for i in order)
    if split == "transpose":
        q, k, v = (t.view(B, T, n_head, hs).transpose(1, 2) for t in (q, k, v))
    else:  # a bare view: the right shape, the wrong contents
        q, k, v = (t.reshape(B, n_head, T, hs) for t in (q, k, v))
    correct_core = scale == "head" and mask == "-inf" and softmax_dim == -1
    if correct_core:
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        by = {"head": hs, "C": C, "none": 1.0, "hs not sqrt": hs * hs}[scale]
        att = (q @ k.transpose(-2, -1)) / math.sqrt(by)
        future = torch.ones(T, T, dtype=torch.bool).triu(1)
        hidden = {"upside down": future.T, "inverted": ~future}.get(mask)  # what a wrong mask hides
        if hidden is not None:
            att = att.masked_fill(hidden, float("-inf"))
        elif mask == "-inf":
            att = att.masked_fill(future, float("-inf"))
        elif mask == "0":
            att = att.masked_fill(future, 0.0)
        att = torch.softmax(att, dim=softmax_dim)
        if mask == "after softmax":
            att = att.masked_fill(future, 0.0)
        y = att @ v
    if merge == "transpose":
        y = y.transpose(1, 2).reshape(B, T, C)
    elif merge == "view":  # (B, nh, T, hs) read straight as (B, T, C)
        y = y.reshape(B, T, C)
    else:  # heads interleaved: channel d * nh + h instead of h * hs + d
        y = y.permute(0, 2, 3, 1).reshape(B, T, C)
    if project:
        proj_bias = w["c_proj.bias"].double() if w["c_proj.bias"] is not None else None
        y = F.linear(y, w["c_proj.weight"].double(), proj_bias)
    return y


def attention_bugs(x: torch.Tensor, w: dict, n_head: int):
    """(hint, what that bug returns) for the usual bugs, computed lazily."""
    wanted = ("Expected: q, k, v = c_attn(x).split(C, dim=2); each .view(B, T, nh, hs).transpose(1, 2); "
              "softmax(q @ k^T / sqrt(hs), future masked with -inf) @ v; merge with .transpose(1, 2).contiguous()"
              ".view(B, T, C); then c_proj.")
    yield (
        "You split the heads with a bare view: x.view(B, nh, T, hs) has the right shape, but its head 0 holds the "
        "first positions' channels instead of every position's first hs channels. Use "
        "x.view(B, T, nh, hs).transpose(1, 2).",
        attention(x, w, n_head, split="view"),
    )
    yield (
        "You merged the heads back without transposing first: y.view(B, T, C) on the (B, nh, T, hs) result lays "
        "one head's positions side by side instead of the heads. Merge with "
        "y.transpose(1, 2).contiguous().view(B, T, C).",
        attention(x, w, n_head, merge="view"),
    )
    yield (
        "You merged the heads in the wrong order: their channels are interleaved (channel d * nh + h) instead of "
        "head h filling channels [h * hs, (h + 1) * hs). Merge with y.transpose(1, 2).contiguous().view(B, T, C).",
        attention(x, w, n_head, merge="interleave"),
    )
    yield (
        "Your scores are scaled by the embedding width C instead of the head size: divide by sqrt(hs), with "
        "hs = C // n_head, the length of each query and key.",
        attention(x, w, n_head, scale="C"),
    )
    yield ("Your scores are not scaled: multiply q @ k^T by 1 / sqrt(hs).", attention(x, w, n_head, scale="none"))
    yield ("Your scores are divided by hs instead of sqrt(hs).", attention(x, w, n_head, scale="hs not sqrt"))
    yield (
        "Your output skips the output projection: pass the merged heads through self.c_proj.",
        attention(x, w, n_head, project=False),
    )
    for order in ((1, 0, 2), (0, 2, 1), (2, 1, 0), (1, 2, 0), (2, 0, 1)):
        got = "q, k, v".split(", ")
        named = ", ".join(got[order.index(i)] for i in range(3))
        yield (
            f"q, k and v come out of c_attn in the wrong order (yours take the chunks as {named}): the first C "
            "channels are the queries, then the keys, then the values: q, k, v = self.c_attn(x).split(C, dim=2).",
            attention(x, w, n_head, order=order),
        )
    yield (
        "Your softmax runs over the query positions (dim=-2) instead of over the keys: use dim=-1, so each "
        "position's weights over the past sum to 1.",
        attention(x, w, n_head, softmax_dim=-2),
    )
    yield (
        "Your softmax runs over the heads (dim=1) instead of over the keys: use dim=-1, so each position's "
        "weights over the past sum to 1.",
        attention(x, w, n_head, softmax_dim=1),
    )
    yield (
        "Your mask fills the future with 0 instead of -inf: a score of 0 still gets weight exp(0) after the "
        "softmax. Use masked_fill(mask == 0, float('-inf')).",
        attention(x, w, n_head, mask="0"),
    )
    yield "Your output ignores the causal mask: fill the future scores with -inf.", attention(x, w, n_head, mask="none")
    yield (
        "Your mask is upside down: it hides the past and keeps the future (j >= i), as masked_fill(tril.T == 0, ...) "
        "or torch.triu do. Fill where the lower triangle is 0: masked_fill(tril[:T, :T] == 0, float('-inf')).",
        attention(x, w, n_head, mask="upside down"),
    )
    yield (
        "Your mask is inverted: it hides the past and the diagonal and keeps only the future (j > i), as "
        "masked_fill(tril == 1, float('-inf')) does: that fills where tril keeps. The last position then sees "
        "nothing at all, and a softmax over nothing but -inf is NaN. Fill where the mask is 0: "
        "masked_fill(tril[:T, :T] == 0, float('-inf')).",
        attention(x, w, n_head, mask="inverted"),
    )
    yield (
        "You mask the weights after the softmax: the future's scores are still in the softmax's sum, so the "
        "weights over the past no longer add up to 1 and the future leaks in. Fill the scores with -inf before the "
        "softmax.",
        attention(x, w, n_head, mask="after softmax"),
    )
    yield wanted, None


def likely_bug(got: torch.Tensor, bugs) -> str:
    """The first bug whose output equals `got`, as the message's diagnosis, else the last hint
    (what was expected)."""
    hint = ""
    for hint, value in bugs:
        if (value is not None and value.shape == got.shape
                and torch.allclose(got.double(), value, RTOL, ATOL, equal_nan=True)):
            return cause(hint)
    return hint


# --- construction --------------------------------------------------------------------------------


@check("c_attn and c_proj have GPT-2's names and shapes, with and without bias", points=1)
@settings(max_examples=8)
@given(n_head=st.sampled_from([1, 3, 4]), head_size=st.integers(1, 4), bias=st.booleans())
def parameter_names(impl, n_head, head_size, bias):
    s = Sizes(B=1, T=1, n_head=n_head, head_size=head_size, block_size=5, bias=bias)
    model = impl.module("multihead").CausalSelfAttention(s.C, n_head, s.block_size, dropout=0.0, bias=bias)
    expect_parameters(model, s)
    layout = impl.probe(tensor_layout, model)
    extra = sorted(set(layout["parameters"]) - set(NAMES))
    if extra:
        raise CheckFailure(
            f"CausalSelfAttention has parameters {extra} besides c_attn and c_proj. Everything it learns lives in "
            "those two layers; a mask is a buffer (self.register_buffer), not an nn.Parameter."
        )


@check("n_embd not divisible by n_head raises a ValueError that says why", points=1)
def rejects_indivisible_heads(impl):
    multihead = impl.module("multihead")
    for n_embd, n_head in ((10, 3), (12, 5), (6, 4)):
        try:
            multihead.CausalSelfAttention(n_embd, n_head, 8)
        except LearnerError as exc:
            error = exc.original
            if not isinstance(error, ValueError):
                raise CheckFailure(
                    f"CausalSelfAttention(n_embd={n_embd}, n_head={n_head}, ...) raised {type(error).__name__}: "
                    f"{str(error)!r}. Raise a ValueError instead (an assert is skipped when Python runs with -O, "
                    f"and says nothing): if n_embd % n_head != 0: raise ValueError(...)."
                ) from None
            text = str(error).lower()
            if not ("n_head" in text or "divisib" in text or (str(n_embd) in text and str(n_head) in text)):
                raise CheckFailure(
                    f"CausalSelfAttention(n_embd={n_embd}, n_head={n_head}, ...) raised ValueError({str(error)!r}), "
                    "which does not say what is wrong. Name the problem: n_embd must be divisible by n_head."
                ) from None
            continue
        raise CheckFailure(
            f"CausalSelfAttention(n_embd={n_embd}, n_head={n_head}, ...) was built without an error, but {n_embd} "
            f"channels cannot be cut into {n_head} equal heads. Check n_embd % n_head in __init__ and raise a "
            "ValueError that says so."
        )


@check("the causal mask is a buffer sized by block_size", points=2)
@example(n_head=2, head_size=4, block_size=13)  # n_embd = 8 < block_size
@settings(max_examples=8)
@given(n_head=st.sampled_from([1, 3, 5]), head_size=st.integers(1, 3), block_size=st.integers(1, 20))
def mask_is_block_size_buffer(impl, n_head, head_size, block_size):
    s = Sizes(B=1, T=block_size, n_head=n_head, head_size=head_size, block_size=block_size)
    model = impl.module("multihead").CausalSelfAttention(s.C, n_head, block_size)
    layout = impl.probe(tensor_layout, model)
    mask = find_mask(layout, s)
    if mask is None:
        raise CheckFailure(
            f"CausalSelfAttention(n_embd={s.C}, n_head={n_head}, block_size={block_size}) keeps no mask: "
            f"its tensors are {sorted(layout['state_dict'])}. Build the (block_size, block_size) lower triangle once "
            "in __init__ and keep it with self.register_buffer(\"tril\", torch.tril(torch.ones(block_size, "
            "block_size))), instead of making a new one on every call."
        )
    kind, name, shape = mask
    if kind == "parameters":
        raise CheckFailure(
            f"Your mask `{name}` is an nn.Parameter, so the optimizer would train it and the causal structure would "
            "drift. Keep it with self.register_buffer(...): it moves with .to(device) and is saved, but never trained."
        )
    if kind == "attributes":
        raise CheckFailure(
            f"Your mask `{name}` is a plain tensor attribute, so model.to(device) leaves it behind and the state dict "
            "does not save it. Register it with self.register_buffer(...)."
        )
    problem = mask_size_problem(mask, s)
    if problem:
        raise CheckFailure(problem)


# --- forward ---------------------------------------------------------------------------------------


@check("forward returns (B, T, C) for every size: odd head counts, T = 1, T = block_size > n_embd", points=2)
@settings(max_examples=12)
@with_examples
@given(s=sizes(max_block=20))
def output_shapes(impl, s):
    model, _ = build(impl, s)
    forward(impl, model, torch.randn(s.B, s.T, s.C), s)


@check("the output equals PyTorch's causal scaled_dot_product_attention on your weights", points=5)
@settings(max_examples=10)
@with_examples(seed=0)
@given(s=sizes(), seed=st.integers(0, 1000))
def matches_sdpa(impl, s, seed):
    model, w = build(impl, s, seed)
    x = torch.randn(s.B, s.T, s.C, generator=torch.Generator().manual_seed(seed + 1))
    got = forward(impl, model, x, s)
    expected = attention(x, w, s.n_head)
    hint = "" if torch.allclose(got.double(), expected, RTOL, ATOL) else likely_bug(got, attention_bugs(x, w, s.n_head))
    assert_close(got, expected.float(), f"the output for {s}", rtol=RTOL, atol=ATOL, hint=hint)


@check("each head attends on its own and fills its own hs channels", points=2)
@example(n_head=3, head_size=2)
@example(n_head=5, head_size=3)
@settings(max_examples=3)
@given(n_head=st.sampled_from([2, 3, 4]), head_size=st.integers(2, 4))
def heads_independent(impl, n_head, head_size):
    s = Sizes(B=2, T=5, n_head=n_head, head_size=head_size, block_size=7)
    C, hs = s.C, head_size
    x = torch.randn(s.B, s.T, C)
    for h in range(n_head):
        model, w = build(impl, s, seed=h)
        # Only head h has values, and c_proj passes the merged heads through unchanged: every
        # other head's channels must come out exactly zero.
        keep = torch.zeros(3 * C, dtype=torch.bool)
        keep[: 2 * C] = True
        keep[2 * C + h * hs : 2 * C + (h + 1) * hs] = True
        w["c_attn.weight"] = w["c_attn.weight"] * keep[:, None]
        w["c_attn.bias"] = w["c_attn.bias"] * keep
        w["c_proj.weight"], w["c_proj.bias"] = torch.eye(C), torch.zeros(C)
        for name, value in w.items():
            impl.probe(set_parameter, model, name, value)
        got = forward(impl, model, x, s)
        mine = slice(h * hs, (h + 1) * hs)
        others = got.clone()
        others[..., mine] = 0
        if others.abs().max() > 1e-6:
            b, t, c = (int(i) for i in (others.abs() == others.abs().max()).nonzero()[0])
            hint = likely_bug(got, attention_bugs(x, w, n_head))
            if hint.startswith("Expected"):
                hint = ("Each head must see only its own hs channels of q, k and v, and put its result in its own "
                        "slot: split with .view(B, T, nh, hs).transpose(1, 2), merge with .transpose(1, 2)"
                        ".contiguous().view(B, T, C).")
            raise CheckFailure(
                f"With n_head={n_head}, head size {hs}, only head {h}'s values nonzero and c_proj the identity, "
                f"only channels {mine.start}..{mine.stop - 1} may be nonzero, but channel {c} at batch {b}, "
                f"position {t} is {others[b, t, c].item():.4g}: the heads are mixed before c_proj.\n{hint}"
            )
        expected = attention(x, w, n_head)
        if not torch.allclose(got.double(), expected, RTOL, ATOL):
            assert_close(
                got[..., mine], expected[..., mine].float(), f"head {h}'s channels {mine.start}..{mine.stop - 1}",
                rtol=RTOL, atol=ATOL, hint=likely_bug(got, attention_bugs(x, w, n_head)),
            )


# --- causality -------------------------------------------------------------------------------------


MASK_HINT = ("Before the softmax, fill the scores where tril[:T, :T] == 0 (the future) with float('-inf'); "
             "check that the mask is the lower triangle (torch.tril), not the upper.")


def causality_hint(got: torch.Tensor, x: torch.Tensor, w: dict, n_head: int) -> str:
    """The usual bug that `got` matches, else how to mask."""
    hint = likely_bug(got, attention_bugs(x, w, n_head))
    if "Your mask fills" in hint:
        hint = hint.replace("masked_fill(mask == 0", "masked_fill(tril[:T, :T] == 0")
    return MASK_HINT if hint.startswith("Expected") else hint


@check("no position's output depends on a later position", points=2)
@example(s=Sizes(B=2, T=7, n_head=3, head_size=2, block_size=7))
@settings(max_examples=6)
@given(s=sizes())
def causal(impl, s):
    model, w = build(impl, s)
    x = torch.randn(s.B, s.T, s.C)
    deps = dependency_map(lambda inp: forward(impl, model, inp, s), x, perturb_vector)
    if any(deps[i, j] for i in range(s.T) for j in range(i + 1, s.T)):
        hint = causality_hint(forward(impl, model, x, s), x, w, s.n_head)
    else:
        hint = "Every position must see itself: the mask's diagonal is 1 (torch.tril, not strictly lower)."
    assert_causal(deps, f"CausalSelfAttention with {s}", hint=hint, require_self=True)


@check("not even a rounding error flows from a later input to an output (so no gradient does)", points=2)
@example(s=Sizes(B=2, T=7, n_head=3, head_size=2, block_size=7))
@settings(max_examples=6)
@given(s=sizes())
def gradient_causal(impl, s):
    model, w = build(impl, s)
    x = torch.randn(s.B, s.T, s.C)
    forward(impl, model, x, s)  # a crash is explained here, before the map
    deps = dependency_map(lambda inp: forward(impl, model, inp, s), x, perturb_vector, exact=True)
    hint = ""
    if any(deps[i, j] for i in range(s.T) for j in range(i + 1, s.T)):
        hint = causality_hint(forward(impl, model, x, s), x, w, s.n_head)
        if hint == MASK_HINT:
            hint = ("The future must get exactly zero weight, so that no gradient reaches it either: mask the scores "
                    "with float('-inf') BEFORE the softmax. Multiplying the weights by the mask after the softmax "
                    "leaves the future in its denominator.")
    assert_causal(deps, f"CausalSelfAttention with {s}", hint=hint, exact=True)


# --- training --------------------------------------------------------------------------------------


@check("gradients reach the weights and biases of c_attn and c_proj", points=1)
def gradients_reach(impl):
    s = Sizes(B=2, T=5, n_head=3, head_size=2, block_size=6)
    model, _ = build(impl, s, train=True)
    x = torch.randn(s.B, s.T, s.C)
    forward(impl, model, x, s)  # a crash is explained here, before the probe
    grads = gradients_of(impl, model, x, what="CausalSelfAttention")
    missing = [name for name in NAMES if name not in grads]
    if missing:
        raise CheckFailure(f"CausalSelfAttention has no parameters named {missing}; it has {sorted(grads)}.")
    assert_gradients_reach(grads, "CausalSelfAttention")


@check("dropout acts in train mode only", points=2)
def dropout_train_eval(impl):
    s = Sizes(B=2, T=6, n_head=3, head_size=4, block_size=8)
    x = torch.randn(s.B, s.T, s.C)
    model, _ = build(impl, s, dropout=0.5, train=True)
    if torch.equal(forward(impl, model, x, s), forward(impl, model, x, s)):
        raise CheckFailure(
            "With dropout=0.5, two calls in train mode gave the same output: dropout is never applied. Apply "
            "self.attn_dropout to the attention weights and self.resid_dropout to the output of c_proj."
        )
    model.eval()
    a, b = forward(impl, model, x, s), forward(impl, model, x, s)
    if not torch.equal(a, b):
        raise CheckFailure(
            "With dropout=0.5, two calls in eval mode gave different outputs: dropout is still active in eval mode. "
            "Use nn.Dropout modules (model.eval() switches them off), or pass training=self.training to F.dropout."
        )
    twin, _ = build(impl, s, dropout=0.0)
    assert_close(a, forward(impl, twin, x, s), "the output in eval mode with dropout=0.5", rtol=RTOL, atol=ATOL,
                 hint="In eval mode the module must equal the same weights with dropout=0.0: dropout acts in train "
                 "mode only.")


@check("attn_dropout drops attention weights, resid_dropout drops output elements", points=1)
def dropout_places(impl):
    s = Sizes(B=4, T=6, n_head=3, head_size=4, block_size=8)
    x = torch.randn(s.B, s.T, s.C)
    model, _ = build(impl, s, dropout=0.5)
    clean = forward(impl, model, x, s)
    modules = "Keep the two dropouts as modules named attn_dropout and resid_dropout: " \
        "self.attn_dropout = nn.Dropout(dropout), self.resid_dropout = nn.Dropout(dropout)."
    try:
        attn_dropout, resid_dropout = model.attn_dropout, model.resid_dropout
    except LearnerError as exc:
        raise CheckFailure(f"{exc.describe()}\n{modules}") from None
    if not (isinstance(attn_dropout, ObjectHandle) and isinstance(resid_dropout, ObjectHandle)):
        raise CheckFailure(f"attn_dropout is {attn_dropout!r} and resid_dropout is {resid_dropout!r}. {modules}")
    attn_dropout.p, resid_dropout.p = 0.0, 0.5
    model.train()
    got = forward(impl, model, x, s)
    zero = got == 0
    kept_right = torch.allclose(got[~zero], 2 * clean[~zero], RTOL, ATOL)
    if not (0.25 < zero.float().mean().item() < 0.75 and kept_right):
        raise CheckFailure(
            f"With resid_dropout.p = 0.5 and attn_dropout.p = 0 in train mode, {zero.float().mean().item():.0%} of "
            "the output elements are zero (expected about half, and the rest doubled). resid_dropout belongs on "
            "the very output: return self.resid_dropout(self.c_proj(y))."
        )
    attn_dropout.p, resid_dropout.p = 0.5, 0.0
    got = forward(impl, model, x, s)
    unchanged = torch.allclose(got, clean, RTOL, ATOL)
    if unchanged or (got == 0).float().mean().item() > 0.1:
        raise CheckFailure(
            "With attn_dropout.p = 0.5 and resid_dropout.p = 0 in train mode, "
            + ("the output did not change" if unchanged else "whole output elements were zeroed")
            + ": attn_dropout belongs on the attention weights, after the softmax and before multiplying by v."
        )


# --- general properties (grader/checks/properties.py) -----------------------------------------


@check("forward leaves x unchanged, even when x requires grad", points=1)
def inputs_unchanged(impl):
    model, _ = build(impl, THREE_HEADS)
    x = torch.randn(THREE_HEADS.B, THREE_HEADS.T, THREE_HEADS.C)
    assert_inputs_unchanged(impl, model, x, what="CausalSelfAttention(x)", names=("x",))


@check("forward follows x's device and dtype (meta, float64): no tensor made on a fixed device in forward", points=1)
def follows_device_and_dtype(impl):
    model, _ = build(impl, BLOCK_ABOVE_EMBD)
    x = torch.randn(BLOCK_ABOVE_EMBD.B, BLOCK_ABOVE_EMBD.T, BLOCK_ABOVE_EMBD.C)
    assert_follows_device_and_dtype(impl, model, x, what="CausalSelfAttention(x)")


@check("forward stays finite and correct on large activations (x times 10 and 100)", points=1)
def stable_on_large_inputs(impl):
    model, _ = build(impl, T_BELOW_BLOCK)
    x = torch.randn(T_BELOW_BLOCK.B, T_BELOW_BLOCK.T, T_BELOW_BLOCK.C)
    assert_stable(
        impl, model, x, what="CausalSelfAttention(x)", rtol=1e-3, atol=1e-4,
        hint="Large scores overflow exp(): use F.softmax (or your stage 04 softmax), which subtracts each row's "
        "max first.",
    )
