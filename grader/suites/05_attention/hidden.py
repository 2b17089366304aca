"""Stage 05, hidden checks: the learner's head against the reference's, on the same weights, and its speed."""
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from grader import check
from grader.checks import CheckFailure, assert_close, assert_speed_ratio
from grader.checks.speed import measure_calls
from grader.handle import LearnerError
from grader.probes import set_parameter

PROJECTIONS = ("key", "query", "value")


def make(module, n_embd, head_size, block_size, dropout=0.0):
    return module.Head(n_embd=n_embd, head_size=head_size, block_size=block_size, dropout=dropout)


def same_weights(impl, ours, theirs) -> None:
    """Copy the reference head's key, query and value weights into the learner's."""
    state = theirs.state_dict()
    for p in PROJECTIONS:
        try:
            impl.probe(set_parameter, ours, f"{p}.weight", state[f"{p}.weight"])
        except LearnerError as exc:
            raise CheckFailure(
                f"Could not load the reference's {p}.weight of shape {tuple(state[f'{p}.weight'].shape)} into your "
                f"head ({exc.original}). Name the projections key, query and value: nn.Linear(n_embd, head_size, "
                "bias=False)."
            ) from None


@st.composite
def sizes(draw):
    """(B, T, n_embd, head_size, block_size) with 1 <= T <= block_size."""
    block_size = draw(st.integers(1, 16))
    return draw(st.integers(1, 3)), draw(st.integers(1, block_size)), draw(st.integers(1, 24)), draw(st.integers(1, 12)), block_size


@check("Head(x) equals the reference's with the same weights", points=2)
@settings(max_examples=8)
@given(sizes=sizes())
@example(sizes=(1, 10, 4, 3, 12))
@example(sizes=(2, 1, 8, 8, 8))
def values_match_reference(impl, ref, sizes):
    batch, T, n_embd, head_size, block_size = sizes
    ours = make(impl.module("attention"), n_embd, head_size, block_size)
    theirs = make(ref.module("attention"), n_embd, head_size, block_size)
    same_weights(impl, ours, theirs)
    ours.eval()
    theirs.eval()
    x = torch.randn(batch, T, n_embd) * 2.0
    assert_close(
        ours(x), theirs(x), f"Head(x) for n_embd={n_embd}, head_size={head_size}, block_size={block_size}, T={T}",
        rtol=1e-4, atol=1e-5,
        hint="Your head differs from the reference's with the same weights. The public check on Head(x)'s values, "
        "computed from your own weights, names the usual causes; scale by head_size ** -0.5, mask the future with "
        "-inf, softmax over dim=-1.",
    )


@check("Head(x) is at most 4x slower than the reference (no Python loop over positions)", points=2)
def speed(impl, ref):
    # A small batch keeps the reference's few big operations cheap, so a loop's T small steps
    # show: a loop is 15-25x slower here, correct variants (einsum, torch.where, a softmax by
    # hand) at most 1.6x. At B=16 a loop is only about 5x, too close to the limit.
    B, T, C, head_size = 4, 128, 64, 16
    ours = make(impl.module("attention"), C, head_size, T)
    theirs = make(ref.module("attention"), C, head_size, T)
    # Each run: 10 calls on new inputs, on one thread (on a busy machine, small ops on several
    # threads wait for each other far longer than they compute), timed by the CPU time the grader
    # reads (measure_calls); the outputs must match the reference's.
    ours.eval()
    theirs.eval()
    same_weights(impl, ours, theirs)
    result = measure_calls((impl, ours), (ref, theirs), lambda gen: (torch.randn(B, T, C, generator=gen),), calls=10,
                           repeats=7, what=f"Head(x) at B={B}, T={T}, C={C}")
    assert_speed_ratio(
        result, 4.0, f"Head(x) at B={B}, T={T}, C={C}, head_size={head_size}",
        hint="Compute every position at once: one (B, T, T) score matrix q @ k.transpose(-2, -1), one masked_fill, "
        "one softmax, one matmul with v. A Python loop over positions runs T small steps instead of one big one.",
    )
