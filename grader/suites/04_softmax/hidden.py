"""Stage 04, hidden checks: attention-shaped masked softmax against the reference, and speed."""
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grader import check
from grader.checks import assert_close, assert_speed_ratio, cause
from grader.checks.speed import measure_calls

NEG_INF = float("-inf")


@check("masked attention weights equal the reference's, padded rows included", points=2)
@given(
    B=st.integers(1, 2), H=st.sampled_from([1, 3]), T=st.integers(1, 10), pad=st.integers(0, 3), seed=st.integers(0, 1000)
)
@settings(max_examples=10)
def masked_weights_match_reference(impl, ref, B, H, T, pad, seed):
    ours, theirs = impl.module("softmax"), ref.module("softmax")
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(B, H, T, T, generator=gen) * 4.0
    # Left padding: the first `pad` keys are hidden from every query, so with the causal mask
    # the first `pad` queries may look at nothing at all.
    scores[..., : min(pad, T)] = NEG_INF
    got = ours.softmax(ours.mask_future(scores), dim=-1)
    expected = theirs.softmax(theirs.mask_future(scores), dim=-1)
    empty_rows = (expected == 0).all(dim=-1)
    nan_in_empty = isinstance(got, torch.Tensor) and got.shape == expected.shape and bool(
        torch.isnan(got[empty_rows]).any())
    assert_close(
        got, expected, f"softmax(mask_future(scores of shape {(B, H, T, T)}), dim=-1) with {pad} padded keys",
        1e-5, 1e-7,
        hint=cause("Rows that may look at nothing (every entry -inf) come back NaN: their max is -inf, and "
                   "-inf - (-inf) is NaN. Shift such a row by 0 instead of its max, and divide by 1 where the sum "
                   "is 0, so that it is all zeros.") if nan_in_empty else
        "Rows that may look at nothing (every entry -inf) must be all zeros; the others a softmax over the "
        "visible past only.",
    )


@check("average_tril and average_softmax are at most 5x slower than the reference", points=2)
def vectorized_speed(impl, ref):
    ours, theirs = impl.module("softmax"), ref.module("softmax")
    # Few channels and a long sequence: the matmul is cheap, so a Python loop over the 128
    # positions shows. Measured on a 2-core machine: loops over positions 25x-40x, a loop
    # inside mask_future about 6x; correct variants (float64 inside, einsum, extra ops in
    # softmax) 1x-1.5x.
    for method in ("average_tril", "average_softmax"):
        # Each run: 10 calls on new inputs, timed by the CPU time the grader reads (measure_calls).
        result = measure_calls((impl, getattr(ours, method)), (ref, getattr(theirs, method)),
                               lambda gen: (torch.randn(4, 128, 16, generator=gen),), calls=10, repeats=7,
                               what=f"{method}(x of shape (4, 128, 16))")
        assert_speed_ratio(
            result, 5.0, f"{method} on x of shape (4, 128, 16)",
            hint="Look for a Python loop over positions or rows, or a mask built element by element: build the "
            "(T, T) weights with whole-tensor operations and average with one matmul.",
        )


@check("every function of softmax.py equals the reference's on drawn inputs", points=1)
@given(B=st.integers(1, 3), T=st.integers(1, 7), C=st.integers(1, 4), dim=st.integers(-3, 2),
       scale=st.sampled_from([1.0, 10.0, 100.0]), seed=st.integers(0, 1000))
@settings(max_examples=10)
def every_function_matches_reference(impl, ref, B, T, C, dim, scale, seed):
    ours, theirs = impl.module("softmax"), ref.module("softmax")
    gen = torch.Generator().manual_seed(seed)
    x, scores = torch.randn(B, T, C, generator=gen) * scale, torch.randn(B, T, T, generator=gen) * scale
    calls = [("softmax", (x, dim), f"softmax(x of shape {(B, T, C)}, dim={dim})"),
             ("causal_mask", (T,), f"causal_mask({T})"),
             ("mask_future", (scores,), f"mask_future(scores of shape {(B, T, T)})"),
             *((method, (x,), f"{method}(x of shape {(B, T, C)})")
               for method in ("average_loop", "average_tril", "average_softmax"))]
    for name, args, what in calls:
        assert_close(getattr(ours, name)(*args), getattr(theirs, name)(*args), what, 1e-5, 1e-6)
