"""Stage 04, public checks: softmax against PyTorch's, the causal mask, the three averages."""
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from grader import check
from grader.checks import (
    CheckFailure,
    assert_causal,
    assert_close,
    assert_follows_device_and_dtype,
    assert_inputs_unchanged,
    cause,
    dependency_map,
    expect_tensor,
    perturb_vector,
)
from grader.handle import LearnerError
from grader.checks.speed import measure_calls

NEG_INF = float("-inf")
METHODS = ("average_loop", "average_tril", "average_softmax")
# float32 softmax: the sum of a few exps carries a relative error of a few 1e-7.
RTOL, ATOL = 1e-5, 1e-6


@st.composite
def tensor_and_dim(draw, max_dims: int = 4, max_size: int = 6):
    """(shape, dim, scale, seed): 1 to `max_dims` dimensions of sizes 1 to `max_size`, dim in [-ndim, ndim).

    Drawn as plain numbers, so that a failing example reads as a shape and a dim; `make`
    builds the float32 tensor.
    """
    shape = tuple(draw(st.lists(st.integers(1, max_size), min_size=1, max_size=max_dims)))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    return shape, dim, draw(st.sampled_from([1.0, 5.0, 30.0])), draw(st.integers(0, 2**16))


def make(case) -> tuple[torch.Tensor, int]:
    shape, dim, scale, seed = case
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale, dim


def call(fn, *args, hint: str = "", **kwargs):
    """Call learner code; when it raises a shape or dtype error, add the likely cause (`hint`)."""
    try:
        return fn(*args, **kwargs)
    except LearnerError as exc:
        text = str(exc.original)
        signs = ("must match the size", "dtype", "scalar type", "shape", "Double", "Float")
        if hint and any(sign in text for sign in signs):
            raise CheckFailure(f"{exc.describe()}\n{hint}") from None
        raise


def wrong_dim_hint(x: torch.Tensor, got: torch.Tensor, dim: int) -> str:
    for other in range(x.dim()):
        if other != dim % x.dim() and x.shape[other] > 1 and torch.allclose(got, torch.softmax(x, other), RTOL, ATOL):
            return (
                f"Your softmax normalizes over dim {other} instead of dim {dim}: use the `dim` argument for both the max "
                "and the sum, with keepdim=True."
            )
    return "Subtract the max along `dim` (keepdim=True), exponentiate, and divide by the sum along the same `dim`."


@check("softmax equals torch.softmax for any shape and any dim", points=3)
@given(case=tensor_and_dim())
def softmax_matches_torch(impl, case):
    x, dim = make(case)
    got = call(
        impl.module("softmax").softmax, x, dim=dim,
        hint="Reduce with keepdim=True (x.amax(dim=dim, keepdim=True), e.sum(dim=dim, keepdim=True)) so that the max "
        "and the sum broadcast back against x along `dim`.",
    )
    expect_tensor(
        got, f"softmax(x of shape {tuple(x.shape)}, dim={dim})", tuple(x.shape), torch.float32,
        hint="softmax keeps the shape of x. Reduce with keepdim=True (x.amax(dim=dim, keepdim=True), "
        "e.sum(dim=dim, keepdim=True)) so the max and the sum broadcast back along `dim`.",
    )
    expected = torch.softmax(x.double(), dim).float()
    assert_close(
        got, expected, f"softmax(x of shape {tuple(x.shape)}, dim={dim})", RTOL, ATOL,
        hint=wrong_dim_hint(x, got, dim) if not torch.isnan(got).any() else
        "NaN came back from finite inputs: subtract the max along `dim` before exp.",
    )


@check("softmax gives entries in [0, 1] that sum to 1 along dim", points=1)
@given(case=tensor_and_dim())
def softmax_rows_sum_to_one(impl, case):
    x, dim = make(case)
    got = impl.module("softmax").softmax(x, dim=dim)
    name = f"softmax(x of shape {tuple(x.shape)}, dim={dim})"
    expect_tensor(got, name, tuple(x.shape), torch.float32)
    if torch.isnan(got).any():
        raise CheckFailure(f"{name} contains NaN for finite inputs: subtract the max along `dim` before exp.")
    if got.min() < 0 or got.max() > 1 + 1e-6:
        raise CheckFailure(
            f"{name} has entries outside [0, 1] (min {got.min().item():.4g}, max {got.max().item():.4g}): "
            "exp is never negative, and dividing by the sum along `dim` keeps each entry at most 1."
        )
    assert_close(
        got.sum(dim), torch.ones(got.sum(dim).shape), f"the sums of {name} along dim {dim}", 1e-5, 1e-5,
        hint="Each slice along `dim` is a probability distribution: divide exp(x - max) by its sum along `dim`, "
        "so the entries sum to 1.",
    )


@check("softmax of large logits (1000, 1e4) is finite and correct", points=2)
def softmax_large_logits(impl):
    rows = torch.tensor([
        [1000.0, 999.0, 998.0, 990.0],
        [-1000.0, -1001.0, -1002.0, -1010.0],
        [1e4, 0.0, -1e4, 5.0],  # the largest entry of the whole tensor is in this row
        [3.0, 1.0, 0.5, 2.0],
    ])
    top = 2
    softmax = impl.module("softmax").softmax
    for dim in (-1, 0):
        # the same rows, laid out along dim
        x = rows if dim == -1 else rows.T.contiguous()
        got = softmax(x, dim=dim)
        name = f"softmax(large logits, dim={dim})"
        expect_tensor(got, name, tuple(x.shape), torch.float32)
        expected = torch.softmax(x.double(), dim).float()
        got_rows, expected_rows = (got, expected) if dim == -1 else (got.T, expected.T)
        bad_rows = [r for r in range(len(rows)) if not torch.allclose(got_rows[r], expected_rows[r], RTOL, ATOL)]
        if not bad_rows:
            continue
        if top in bad_rows and torch.isnan(got_rows[top]).any():
            hint = (
                "exp(1000) overflows to inf in float32, and inf / inf is NaN. Subtract the max along `dim` first: "
                "softmax(x) equals softmax(x - max), and then the largest entry is exp(0) = 1."
            )
        elif top not in bad_rows:
            hint = (
                f"The slice holding the largest value of the whole tensor is right, but slices {bad_rows} are not: it "
                "looks like you subtract one max for the whole tensor. Each slice along `dim` needs its own max "
                "(x.amax(dim=dim, keepdim=True)); otherwise exp(-1000 - 10000) underflows to 0 in the other slices."
            )
        else:
            hint = "Subtract each slice's own max along `dim` (keepdim=True) before exp."
        assert_close(got, expected, name, RTOL, ATOL, hint=hint)


@check("softmax gives -inf entries exactly 0 weight", points=1)
@given(case=tensor_and_dim(max_dims=3), seed=st.integers(0, 1000))
def softmax_masked_entries_are_zero(impl, case, seed):
    x, dim = make(case)
    masked = torch.rand(x.shape, generator=torch.Generator().manual_seed(seed)) < 0.4
    # keep the first entry of every slice along dim, so that no slice is fully masked here
    index = [slice(None)] * x.dim()
    index[dim] = 0
    masked[tuple(index)] = False
    x = x.masked_fill(masked, NEG_INF)
    got = impl.module("softmax").softmax(x, dim=dim)
    name = f"softmax(x with -inf entries, dim={dim})"
    expect_tensor(got, name, tuple(x.shape), torch.float32)
    leaked = masked & (got != 0)
    if leaked.any():
        where = [int(i) for i in leaked.nonzero()[0]]
        raise CheckFailure(
            f"{name}: the entry at index {where} is -inf, so its weight must be exactly 0, but it is "
            f"{got[tuple(where)].item():.6g}. Keep -inf as it is: exp(-inf - max) is exactly 0. Replacing -inf "
            "by 0 (or any finite number) gives masked positions weight."
        )
    assert_close(got, torch.softmax(x.double(), dim).float(), name, RTOL, ATOL)


@check("softmax of a fully masked row (all -inf) is all zeros, not NaN", points=2)
@given(dim=st.sampled_from([-1, 0, 1]), T=st.integers(1, 5))
@settings(max_examples=8)
def softmax_fully_masked_row(impl, dim, T):
    x = torch.randn(3, T, 4)
    moved = x.movedim(dim, -1)  # a view: writing to it writes into x
    moved[0, 0] = NEG_INF  # one slice along dim entirely masked
    if moved.shape[-1] > 1:
        moved[-1, -1, 1:] = NEG_INF  # and one masked everywhere but its first entry (another slice for any T)
    got = impl.module("softmax").softmax(x, dim=dim)
    name = f"softmax(x of shape {tuple(x.shape)} with a fully masked slice, dim={dim})"
    expect_tensor(got, name, tuple(x.shape), torch.float32)
    row = got.movedim(dim, -1)[0, 0]
    if torch.isnan(row).any() or (row != 0).any():
        raise CheckFailure(
            f"{name}: the slice whose entries are all -inf came back as {[round(v, 4) for v in row.tolist()]}, expected "
            "all zeros. Its max is -inf, and -inf - (-inf) is NaN. A row that may look at nothing should give "
            "nothing: shift such a row by 0 instead of its max (so every exp is 0), and divide by 1 where the sum is 0."
        )
    expected = torch.softmax(x.double(), dim).nan_to_num(0.0).float()
    assert_close(got, expected, name, RTOL, ATOL, hint="Only the fully masked slice should be all zeros.")


@check("softmax and the three averages keep the dtype (float32 and float64)", points=1)
@given(dtype=st.sampled_from([torch.float32, torch.float64]), T=st.integers(1, 6))
@settings(max_examples=6)
def keeps_dtype(impl, dtype, T):
    module = impl.module("softmax")
    x = torch.randn(2, T, 3, dtype=dtype)
    name = {torch.float32: "float32", torch.float64: "float64"}[dtype]
    got = module.softmax(x, dim=-1)
    expect_tensor(
        got, f"softmax of a {name} tensor", tuple(x.shape), dtype,
        hint=f"Return the same dtype you were given: a {name} input gives a {name} output.",
    )
    if dtype == torch.float64:
        assert_close(
            got, torch.softmax(x, -1), "softmax of a float64 tensor", 1e-12, 1e-14,
            hint="Compute in the input's own dtype: float64 in, float64 precision out.",
        )
    oracle = x.cumsum(1) / torch.arange(1, T + 1, dtype=dtype).view(1, T, 1)
    for method in METHODS:
        got = call(
            getattr(module, method), x,
            hint=f"{method} on a {name} input: create your (T, T) tensors with dtype=x.dtype and device=x.device.",
        )
        expect_tensor(
            got, f"{method} of a {name} tensor", tuple(x.shape), dtype,
            hint=f"Create your (T, T) tensors with dtype=x.dtype, so a {name} input gives a {name} output.",
        )
        rtol, atol = (1e-5, 1e-6) if dtype == torch.float32 else (1e-10, 1e-12)
        if not torch.allclose(got, oracle, rtol, atol):  # wrong weights, not the dtype: say which
            fn = getattr(module, method)
            assert_close(got, oracle, f"{method} of a {name} tensor", rtol, atol, hint=averaging_hint(fn, method))


@check("causal_mask(T) is the (T, T) bool lower triangle, diagonal included", points=2)
@given(T=st.integers(1, 20))
@example(T=5)  # first, so that a wrong mask is shown on a grid big enough to read
@settings(max_examples=10)
def causal_mask_is_lower_triangular(impl, T):
    mask = impl.module("softmax").causal_mask(T)
    expect_tensor(mask, f"causal_mask({T})", (T, T))
    expected = torch.tril(torch.ones(T, T, dtype=torch.bool))
    if mask.dtype != torch.bool:
        raise CheckFailure(
            f"causal_mask({T}) has dtype {mask.dtype}, expected torch.bool: True where position i may look at "
            "position j (j <= i), False elsewhere. Create it with dtype=torch.bool."
        )
    if torch.equal(mask, expected):
        return
    if torch.equal(mask, torch.tril(expected, diagonal=-1)):
        hint = "The diagonal is False: a position must be able to look at itself. Use torch.tril with diagonal=0."
    elif torch.equal(mask, ~expected):
        hint = "Your mask is inverted: True must mean 'may look' (j <= i), False the masked future."
    elif torch.equal(mask, expected.T) or torch.equal(mask, torch.triu(expected.T, diagonal=1)):
        hint = "Your mask is the upper triangle: True must be where j <= i (the past), the lower one. Use torch.tril."
    else:
        hint = "mask[i, j] must be True exactly when j <= i."
    i, j = (mask != expected).nonzero()[0].tolist()
    raise CheckFailure(
        f"causal_mask({T})[{i}, {j}] is {bool(mask[i, j])}, expected {bool(expected[i, j])}.\n"
        f"Yours for T={min(T, 6)}:\n{_grid(mask[:6, :6])}\n{hint}"
    )


@check("mask_future puts -inf above the diagonal and keeps the rest", points=2)
@given(
    lead=st.sampled_from([(), (1,), (3,), (2, 3)]),
    T=st.integers(1, 9),
    seed=st.integers(0, 1000),
)
@example(lead=(2,), T=5, seed=1)  # first, so that the diagnosis sees a real triangle
@settings(max_examples=12)
def mask_future_hides_the_future(impl, lead, T, seed):
    scores = torch.randn(*lead, T, T, generator=torch.Generator().manual_seed(seed))
    got = call(
        impl.module("softmax").mask_future, scores,
        hint="Build the (T, T) mask from the last dimension of scores; it broadcasts over any leading dimensions.",
    )
    name = f"mask_future(scores of shape {tuple(scores.shape)})"
    expect_tensor(got, name, tuple(scores.shape), torch.float32)
    future = ~torch.tril(torch.ones(T, T, dtype=torch.bool))
    expected = scores.masked_fill(future, NEG_INF)
    if torch.equal(got, expected):
        return
    below = torch.tril(torch.ones(T, T, dtype=torch.bool), diagonal=-1)
    diagonal = torch.eye(T, dtype=torch.bool)
    future_inf = bool(torch.isneginf(got[..., future]).all()) if future.any() else True
    future_kept = torch.equal(got[..., future], scores[..., future])
    below_inf = bool(torch.isneginf(got[..., below]).all()) if below.any() else False
    diagonal_inf = bool(torch.isneginf(got[..., diagonal]).any())
    if future.any() and (got[..., future] == 0).all():
        hint = (
            "The future is filled with 0 instead of -inf. exp(0) = 1, so after softmax the future still gets weight; "
            "only -inf becomes exactly 0."
        )
    elif future.any() and future_kept and diagonal_inf:
        hint = (
            "The mask is used the wrong way round: you filled where causal_mask is True (the positions that may be "
            "seen). Fill where it is False, masked_fill(~mask, float('-inf')), so only j > i becomes -inf."
        )
    elif future.any() and below_inf and not future_inf:
        hint = "You masked the past (below the diagonal) instead of the future: only j > i gets -inf."
    elif diagonal_inf:
        hint = "The diagonal is masked too: position i may look at itself, so only j > i gets -inf."
    elif not future_inf:
        hint = "Every position above the diagonal (j > i, the future) must be -inf."
    elif torch.isneginf(got[..., ~future]).any():
        hint = "Only the future, j > i, gets -inf; the past and the diagonal stay as they are."
    else:
        hint = "Where j <= i, the scores must come back unchanged."
    wrong = (got != expected) & ~(torch.isnan(got) & torch.isnan(expected))
    where = [int(i) for i in wrong.nonzero()[0]]
    raise CheckFailure(
        f"{name} at index {where} is {got[tuple(where)].item():.6g}, expected {expected[tuple(where)].item():.6g}.\n{hint}"
    )


def _grid(values: torch.Tensor) -> str:
    cell = (lambda v: f"{v:5.2f}") if values.is_floating_point() else (lambda v: str(int(v)))
    return "\n".join("    " + " ".join(cell(v) for v in row.tolist()) for row in values)


def averaging_weights(method, T: int) -> torch.Tensor:
    """The (T, T) weights a linear averaging method applies: feed it the identity, one channel per position."""
    return method(torch.eye(T).unsqueeze(0))[0]


def mask_direction_problem(w: torch.Tensor) -> str:
    """What is wrong with averaging weights `w` (T, T) whose mask points the wrong way ('' if it does not)."""
    seen = w.nan_to_num(nan=0.0).abs() > 1e-6
    if not seen.triu(1).any():
        return ""
    if not seen.tril().any():
        return ("Your mask is inverted: it hides the past and the diagonal and keeps only the future (j > i), as "
                "masked_fill(mask, float('-inf')) or masked_fill(tril == 1, ...) does: that fills where the mask says "
                "'may look'. Fill where it is False: masked_fill(~mask, float('-inf')) (mask_future does this).")
    if not seen.tril(-1).any():
        return ("Your mask is upside down: it keeps the future (j >= i) and hides the past, as torch.triu or "
                "masked_fill(tril.T == 0, ...) does. Keep the lower triangle: torch.tril, and fill where it is 0.")
    return ""


def averaging_hint(method, name: str) -> str:
    """What is wrong with a method's weights, read off by feeding it the identity."""
    T = 4
    w = averaging_weights(method, T)
    if tuple(w.shape) != (T, T):
        return ""
    ones = torch.tril(torch.ones(T, T))
    right = ones / ones.sum(1, keepdim=True)
    shown = (
        f"\nThe weights your {name} applies for T={T} (row t: the weight of each input in output t):\n{_grid(w)}\n"
        f"expected:\n{_grid(right)}"
    )
    found = mask_direction_problem(w)
    if found:
        return cause(found) + shown
    if torch.isnan(w).any():
        empty_row = bool(torch.isnan(w[0]).any())
        found = "NaN weights: " + ("a row averages nothing (x[b, :t] is empty at t = 0; use x[b, :t+1])." if empty_row else "a 0/0.")
    elif torch.allclose(w, ones):
        found = "The lower triangle is not normalized: divide each row by its own sum, tril / tril.sum(dim=1, keepdim=True)."
    elif torch.allclose(w, ones / ones.sum(0, keepdim=True), atol=1e-6):
        found = "Normalized over the wrong dimension: each ROW must sum to 1 (sum(dim=1, keepdim=True); softmax over dim=-1)."
    elif (w.triu(1).abs() > 1e-6).any():
        found = "Weights above the diagonal: the average includes the future. Mask positions j > t."
    elif (w.diagonal().abs() < 1e-6).any():
        found = "Position t itself gets no weight: the average must include it (x[b, :t+1], the diagonal included)."
    else:
        return "Row t must be 1/(t+1) on columns 0..t and 0 after." + shown
    return cause(found) + shown


@check("the three averages agree with each other and with the running mean", points=3)
@given(B=st.integers(1, 3), T=st.integers(1, 12), C=st.integers(1, 5), seed=st.integers(0, 1000))
@settings(max_examples=15)
def averages_agree(impl, B, T, C, seed):
    module = impl.module("softmax")
    x = torch.randn(B, T, C, generator=torch.Generator().manual_seed(seed))
    oracle = (x.double().cumsum(1) / torch.arange(1, T + 1, dtype=torch.float64).view(1, T, 1)).float()
    for method in METHODS:
        fn = getattr(module, method)
        got = call(fn, x, hint="x is (B, T, C); the (T, T) weights multiply it as weights @ x.")
        name = f"{method}(x of shape {(B, T, C)})"
        expect_tensor(got, name, (B, T, C), torch.float32)
        if not torch.allclose(got, oracle, 1e-5, 1e-6, equal_nan=False):
            hint = f"out[b, t] is the mean of x[b, 0..t].\n{averaging_hint(fn, method)}"
            assert_close(got, oracle, name, 1e-5, 1e-6, hint=hint)


@check("each average depends only on the past (the dependency map)", points=2)
@given(T=st.integers(1, 8))
@settings(max_examples=4)
def averaging_is_causal(impl, T):
    module = impl.module("softmax")
    x = torch.randn(2, T, 3)
    for method in METHODS:
        deps = dependency_map(getattr(module, method), x, perturb_vector)
        direction = mask_direction_problem(averaging_weights(getattr(module, method), 4))
        assert_causal(
            deps, method, require_self=True,
            hint=cause(direction) if direction else
            "The future must get weight exactly 0: fill the scores above the diagonal with -inf (mask_future) "
            "before the softmax, or keep only the lower triangle (torch.tril). Every position includes itself.",
        )


def running_mean_oracle(method: str):
    """PyTorch's own way to each average, for the speed comparison: the same few whole-tensor ops."""

    def average(x):
        T = x.shape[1]
        if method == "average_tril":
            weights = torch.tril(torch.ones(T, T))
            return (weights / weights.sum(dim=1, keepdim=True)) @ x
        future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
        return torch.softmax(torch.zeros(T, T).masked_fill(future, NEG_INF), dim=-1) @ x

    return average


@check("average_tril and average_softmax have no Python loop over positions", points=2)
def no_loop_over_positions(impl):
    module = impl.module("softmax")
    # 128 positions: a loop makes 128 small steps where PyTorch's ops make one (25x-40x slower); a
    # softmax written by hand costs a few ops more than torch.softmax (under 3x). The grader reads
    # the CPU time itself, and every run gets new inputs (measure_calls).
    for method in METHODS[1:]:
        result = measure_calls((impl, getattr(module, method)), (None, running_mean_oracle(method)),
                               lambda gen: (torch.randn(2, 128, 8, generator=gen),), calls=10, repeats=5,
                               what=f"{method}(x of shape (2, 128, 8))", rtol=1e-4, atol=1e-5)
        if result.ratio > 8.0:
            raise CheckFailure(
                f"{method} on x of shape (2, 128, 8) took {result.ratio:.1f}x the time of the same average written "
                "with PyTorch's whole-tensor ops (median of 5 runs of 10 calls, CPU time): the work grows with the "
                "sequence length, so there is a Python loop over positions (or over rows). Build the (T, T) weights "
                "with whole-tensor operations (torch.tril, masked_fill, your softmax along dim=-1) and average with "
                "one matmul, weights @ x. On a GPU, each call in such a loop is a separate kernel launch."
            )


# --- general properties (grader/checks/properties.py) -----------------------------------------


@check("softmax, mask_future and the averages leave their input unchanged, even one that requires grad", points=1)
def inputs_unchanged(impl):
    module = impl.module("softmax")
    x = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0))
    masked = x.clone()
    masked[0, 1, 2] = NEG_INF
    assert_inputs_unchanged(impl, module.softmax, masked, what="softmax(x, dim=-1)", names=("x",), dim=-1)
    scores = torch.randn(2, 5, 5, generator=torch.Generator().manual_seed(1))
    assert_inputs_unchanged(impl, module.mask_future, scores, what="mask_future(scores)", names=("scores",))
    for method in METHODS:
        assert_inputs_unchanged(impl, getattr(module, method), x, what=f"{method}(x)", names=("x",))


@check("causal_mask honours device=, and the other functions follow their input's device and dtype (meta, float64)",
       points=1)
def follows_device_and_dtype(impl):
    module = impl.module("softmax")
    mask = module.causal_mask(4, device="meta")
    expect_tensor(mask, "causal_mask(4, device='meta')", (4, 4), torch.bool)
    if mask.device.type != "meta":
        raise CheckFailure(
            f"causal_mask(4, device='meta') returned a mask on {mask.device.type}: pass device=device on to the "
            "tensor you build (torch.ones(T, T, dtype=torch.bool, device=device))."
        )
    x, scores = torch.randn(2, 5, 3), torch.randn(2, 5, 5)
    assert_follows_device_and_dtype(impl, module.softmax, scores, what="softmax(x, dim=-1)", dim=-1)
    assert_follows_device_and_dtype(impl, module.mask_future, scores, what="mask_future(scores)")
    for method in METHODS:
        assert_follows_device_and_dtype(impl, getattr(module, method), x, what=f"{method}(x)")
