"""Stage 06, hidden checks: the learner's output against the reference's with the same weights, and speed."""
from __future__ import annotations

import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from grader import check
from grader.checks import CheckFailure, assert_close, assert_speed_ratio, expect_tensor
from grader.checks.speed import measure_calls
from grader.handle import LearnerError
from grader.probes import set_parameter

RTOL, ATOL = 1e-4, 1e-5
NAMES = ("c_attn.weight", "c_attn.bias", "c_proj.weight", "c_proj.bias")


def pair(impl, ref, n_embd: int, n_head: int, block_size: int, bias: bool = True):
    """The learner's module and the reference's, in eval mode, with the reference's weights in both."""
    ours = impl.module("multihead").CausalSelfAttention(n_embd, n_head, block_size, dropout=0.0, bias=bias)
    theirs = ref.module("multihead").CausalSelfAttention(n_embd, n_head, block_size, dropout=0.0, bias=bias)
    state = theirs.state_dict()
    for name in NAMES:
        if name in state:
            try:
                impl.probe(set_parameter, ours, name, state[name])
            except LearnerError as exc:
                raise CheckFailure(f"{exc.describe()}\nName the layers c_attn and c_proj, as GPT-2 does.") from None
    ours.eval()
    theirs.eval()
    return ours, theirs


@check("the output equals the reference's with the same weights", points=2)
@example(n_head=3, head_size=2, block_size=16, B=1, T=16, bias=True)
@example(n_head=7, head_size=3, block_size=9, B=2, T=1, bias=False)
@settings(max_examples=6)
@given(
    n_head=st.sampled_from([1, 2, 3, 5, 8]), head_size=st.integers(1, 6), block_size=st.integers(1, 16),
    B=st.integers(1, 3), T=st.integers(1, 16), bias=st.booleans(),
)
def matches_reference(impl, ref, n_head, head_size, block_size, B, T, bias):
    T = min(T, block_size)
    n_embd = n_head * head_size
    ours, theirs = pair(impl, ref, n_embd, n_head, block_size, bias)
    x = torch.randn(B, T, n_embd)
    got, expected = ours(x), theirs(x)
    expect_tensor(got, "CausalSelfAttention(x)", tuple(expected.shape), torch.float32)
    assert_close(
        got, expected, f"the output (n_embd={n_embd}, n_head={n_head}, block_size={block_size}, B={B}, T={T}, "
        f"bias={bias})", rtol=RTOL, atol=ATOL,
        hint="The public check against scaled_dot_product_attention names the usual bugs; run it for details.",
    )


# Two shapes, each where one kind of Python loop costs far more than the math: one long
# sequence (a loop over positions runs T = 256 times) and many short ones (a loop over the batch,
# or over the batch and the heads, runs 128 or 256 times). Measured on a busy 2-core machine, one
# thread: a loop over the heads alone (matmul or einsum) takes 0.8x to 1.1x the reference's time
# in both; a loop over positions 8x to 12x in the first; a loop over batch and heads 20x in the
# second. Few heads, so that a loop over the heads, which is fine, stays cheap.
WORKLOADS = (
    ((1, 256, 64, 4), "one long sequence",
     "Look for a Python loop over the positions: compute all T x T scores with one matmul, then mask the future."),
    ((128, 8, 32, 2), "many short sequences",
     "Look for a Python loop over the batch (and the heads): the batch and the heads are both batch dimensions "
     "of one matmul, (B, nh, T, hs) @ (B, nh, hs, T)."),
)


@check("forward is at most 3x slower than the reference (no Python loop over the batch or the positions)", points=2)
def vectorized_speed(impl, ref):
    for (B, T, C, n_head), what, hint in WORKLOADS:
        ours, theirs = pair(impl, ref, C, n_head, T)
        # Each run: 3 calls on new inputs, on one thread, timed by the CPU time the grader reads
        # (measure_calls); the outputs must match the reference's.
        result = measure_calls((impl, ours), (ref, theirs), lambda gen: (torch.randn(B, T, C, generator=gen),),
                               calls=3, repeats=7, what=f"forward on x of shape ({B}, {T}, {C})", rtol=RTOL, atol=ATOL)
        assert_speed_ratio(result, 3.0, f"forward on {what}, x of shape ({B}, {T}, {C}) with {n_head} heads,", hint=hint)
