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
    failing_line,
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


SHAPE_ERRORS = ("must match the size", "shape", "size mismatch", "cannot be multiplied", "broadcast")
DTYPE_ERRORS = ("dtype", "scalar type", "Double", "Float")


def call(fn, *args, explain=None, **kwargs):
    """Call learner code. When it raises, `explain(line, error)` may name the likely cause from the
    line of the learner's code that raised and the error's text ('' when it cannot tell)."""
    try:
        return fn(*args, **kwargs)
    except LearnerError as exc:
        found = explain(failing_line(exc), str(exc.original)) if explain else ""
        if not found:
            raise
        raise CheckFailure(f"{exc.describe()}\n{cause(found)}") from None


def _quoted(line: str) -> str:
    return f"`{line}`" if line else "Your code"


def softmax_error(line: str, error: str) -> str:
    if any(sign in error for sign in SHAPE_ERRORS):
        return (f"{_quoted(line)} combines tensors whose shapes do not match: a max or a sum taken along `dim` "
                "without keepdim=True loses that dimension and no longer broadcasts against x. Reduce with "
                "keepdim=True (x.amax(dim=dim, keepdim=True), e.sum(dim=dim, keepdim=True)).")
    return ""


def same(got: torch.Tensor, value: torch.Tensor) -> bool:
    """`got` equals `value`, NaN where it has NaN (an overflow gives the same NaN in the grader's copy)."""
    return got.shape == value.shape and torch.allclose(got.double(), value.double(), RTOL, ATOL, equal_nan=True)


def softmax_bugs(x: torch.Tensor, dim: int):
    """(bug, diagnosis, what softmax(x, dim) gives with that bug) for the softmax bugs learners write,
    computed in float32 as theirs is, so that an overflow gives the same inf or NaN."""
    for other in range(x.dim()):
        if other != dim % x.dim() and x.shape[other] > 1:
            yield ("wrong dim", f"Your softmax normalizes over dim {other} instead of dim {dim}: use the `dim` "
                   "argument for both the max and the sum, with keepdim=True.", torch.softmax(x, other))
    no_max = ("You exponentiate x without subtracting the max first: exp of a logit above about 88 overflows "
              "float32 to inf (and inf / inf is NaN), exp of one below about -104 underflows to 0. Subtract the max "
              "along `dim` (keepdim=True) before exp: softmax(x) equals softmax(x - max).")
    global_max = ("You subtract one max for the whole tensor: each slice along `dim` needs its own max "
                  "(x.amax(dim=dim, keepdim=True)), or the slices far below the overall max underflow to 0.")
    for bug, hint, e in (("no max", no_max, torch.exp(x)), ("global max", global_max, torch.exp(x - x.max()))):
        total = e.sum(dim, keepdim=True)
        yield bug, hint, e / total
        yield bug, hint, e / total.masked_fill(total == 0, 1.0)  # with the guard for fully masked rows
    e = torch.exp(x - x.amax(dim, keepdim=True))
    yield ("not normalized", "Your softmax is not normalized: divide exp(x - max) by its sum along `dim` "
           "(keepdim=True), so that the entries of each slice sum to 1.", e)
    yield ("whole sum", "You divide by the sum of the whole tensor: divide by the sum along `dim` (keepdim=True), "
           "so that the entries of each slice sum to 1.", e / e.sum())
    yield ("log", "Your softmax returns log-probabilities (log_softmax): exponentiate x - max, then divide by the sum "
           "along `dim`.", torch.log_softmax(x, dim))


# Inputs that tell the softmax bugs apart when the failing example fits several: logits as large
# as 1e4 in one slice only, and a tensor with three dimensions of different sizes.
TELLING_INPUTS = (
    (torch.tensor([[1000.0, 999.0, 998.0], [1e4, 0.0, -1e4], [3.0, 1.0, 0.5]]), -1),
    (torch.tensor([[1000.0, 999.0, 998.0], [1e4, 0.0, -1e4], [3.0, 1.0, 0.5]]).T.contiguous(), 0),
    (torch.linspace(-3.0, 4.0, 24).view(2, 3, 4), 1),
)


def softmax_diagnosis(softmax, x: torch.Tensor, dim: int, got: torch.Tensor) -> str:
    """The one known bug that explains the learner's `got` = softmax(x, dim) ('' when none, or
    when the telling inputs cannot decide between several)."""
    found = {bug: hint for bug, hint, value in softmax_bugs(x, dim) if same(got, value)}
    for telling, telling_dim in TELLING_INPUTS:
        if len(found) < 2:
            break
        try:
            answer = softmax(telling, dim=telling_dim)
        except LearnerError:
            return ""
        if not isinstance(answer, torch.Tensor):
            return ""
        fits = {bug for bug, _, value in softmax_bugs(telling, telling_dim) if same(answer, value)}
        found = {bug: hint for bug, hint in found.items() if bug in fits}
    return next(iter(found.values())) if len(found) == 1 else ""


def expect_softmax_shape(got, x: torch.Tensor, dim: int, name: str) -> None:
    """softmax(x, dim) gave a tensor of x's shape and dtype; else the likely cause, as a diagnosis."""
    expect_tensor(got, name)
    if got.shape != x.shape:
        reduced = [size for i, size in enumerate(x.shape) if i != dim % x.dim()]
        try:
            lost_keepdim = torch.broadcast_shapes(x.shape, reduced) == got.shape
        except RuntimeError:
            lost_keepdim = False
        raise CheckFailure(f"{name} has shape {tuple(got.shape)}, expected {tuple(x.shape)}: softmax keeps the shape "
                           "of x.\n" + cause(
                               "A max or a sum taken along `dim` without keepdim=True loses that dimension, and "
                               "broadcasting it back against x makes the wrong shape. Reduce with keepdim=True "
                               "(x.amax(dim=dim, keepdim=True), e.sum(dim=dim, keepdim=True))." if lost_keepdim else
                               "Compute elementwise on x, and reduce with keepdim=True so that the max and the sum "
                               "broadcast back along `dim`."))
    if got.dtype != x.dtype:
        kind = str(x.dtype).removeprefix("torch.")
        raise CheckFailure(f"{name} has dtype {got.dtype}, expected {x.dtype}.\n" + cause(
            f"Return the dtype you were given: a {kind} input gives a {kind} output (compute in x's own dtype, or "
            "convert back with .to(x.dtype))."))


@check("softmax equals torch.softmax for any shape and any dim", points=3)
@given(case=tensor_and_dim())
def softmax_matches_torch(impl, case):
    x, dim = make(case)
    softmax = impl.module("softmax").softmax
    got = call(softmax, x, dim=dim, explain=softmax_error)
    name = f"softmax(x of shape {tuple(x.shape)}, dim={dim})"
    expect_softmax_shape(got, x, dim, name)
    expected = torch.softmax(x.double(), dim).float()
    if torch.allclose(got, expected, RTOL, ATOL):
        return
    found = softmax_diagnosis(softmax, x, dim, got)
    default = ("NaN came back from finite inputs: subtract the max along `dim` before exp." if torch.isnan(got).any()
               else "Subtract the max along `dim` (keepdim=True), exponentiate, and divide by the sum along `dim`.")
    assert_close(got, expected, name, RTOL, ATOL, hint=cause(found) if found else default)


@check("softmax gives entries in [0, 1] that sum to 1 along dim", points=1)
@given(case=tensor_and_dim())
def softmax_rows_sum_to_one(impl, case):
    x, dim = make(case)
    softmax = impl.module("softmax").softmax
    got = softmax(x, dim=dim)
    name = f"softmax(x of shape {tuple(x.shape)}, dim={dim})"
    expect_softmax_shape(got, x, dim, name)
    sums = got.sum(dim)
    in_range = not torch.isnan(got).any() and got.min() >= 0 and got.max() <= 1 + 1e-6
    if in_range and torch.allclose(sums, torch.ones_like(sums), 1e-5, 1e-5):
        return
    found = softmax_diagnosis(softmax, x, dim, got)
    if torch.isnan(got).any():
        raise CheckFailure(f"{name} contains NaN for finite inputs.\n" + cause(
            found or "Subtract the max along `dim` before exp: exp of a large logit overflows to inf, and inf / inf "
            "is NaN."))
    if got.min() < 0 or got.max() > 1 + 1e-6:
        raise CheckFailure(
            f"{name} has entries outside [0, 1] (min {got.min().item():.4g}, max {got.max().item():.4g}).\n" + cause(
                found or "exp is never negative, and dividing by the sum along `dim` keeps each entry at most 1.")
        )
    assert_close(
        sums, torch.ones(sums.shape), f"the sums of {name} along dim {dim}", 1e-5, 1e-5,
        hint=cause(found or "Each slice along `dim` is a probability distribution: divide exp(x - max) by its sum "
                   "along `dim`, so the entries sum to 1."),
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
        expect_softmax_shape(got, x, dim, name)
        expected = torch.softmax(x.double(), dim).float()
        got_rows, expected_rows = (got, expected) if dim == -1 else (got.T, expected.T)
        bad_rows = [r for r in range(len(rows)) if not torch.allclose(got_rows[r], expected_rows[r], RTOL, ATOL)]
        if not bad_rows:
            continue
        if top in bad_rows and torch.isnan(got_rows[top]).any():
            found = (
                "exp(1000) overflows to inf in float32, and inf / inf is NaN. Subtract the max along `dim` first: "
                "softmax(x) equals softmax(x - max), and then the largest entry is exp(0) = 1."
            )
        elif top not in bad_rows:
            found = (
                f"The slice holding the largest value of the whole tensor is right, but slices {bad_rows} are not: it "
                "looks like you subtract one max for the whole tensor. Each slice along `dim` needs its own max "
                "(x.amax(dim=dim, keepdim=True)); otherwise exp(-1000 - 10000) underflows to 0 in the other slices."
            )
        else:
            found = "Subtract each slice's own max along `dim` (keepdim=True) before exp."
        assert_close(got, expected, name, RTOL, ATOL, hint=cause(found))


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
    expect_softmax_shape(got, x, dim, name)
    leaked = masked & (got != 0)
    if leaked.any():
        where = [int(i) for i in leaked.nonzero()[0]]
        zeroed = same(got, torch.softmax(x.masked_fill(masked, 0.0), dim))
        raise CheckFailure(
            f"{name}: the entry at index {where} is -inf, so its weight must be exactly 0, but it is "
            f"{got[tuple(where)].item():.6g}.\n" + cause(
                ("You replace -inf by 0 before the softmax, so a masked entry gets the weight of a score of 0. "
                 if zeroed else "A -inf entry gets weight: replacing -inf by a finite number gives masked positions "
                 "weight. ") + "Keep -inf as it is: exp(-inf - max) is exactly 0.")
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
    expect_softmax_shape(got, x, dim, name)
    row = got.movedim(dim, -1)[0, 0]
    if torch.isnan(row).any() or (row != 0).any():
        if torch.isnan(row).any():
            found = "Its max is -inf, and -inf - (-inf) is NaN."
        elif torch.allclose(row, torch.full_like(row, 1 / len(row))):
            found = ("It came back uniform: the -inf entries were replaced by a finite number (or shifted by a finite "
                     "max that cancels them), so every position gets the same weight.")
        else:
            found = "A fully masked slice must give no weight to anything."
        raise CheckFailure(
            f"{name}: the slice whose entries are all -inf came back as {[round(v, 4) for v in row.tolist()]}, expected "
            "all zeros.\n" + cause(f"{found} A row that may look at nothing should give nothing: shift such a row by 0 "
                                   "instead of its max (so every exp is 0), and divide by 1 where the sum is 0.")
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
    expect_softmax_shape(got, x, -1, f"softmax of a {name} tensor")
    if dtype == torch.float64:
        assert_close(
            got, torch.softmax(x, -1), "softmax of a float64 tensor", 1e-12, 1e-14,
            hint=cause("Your softmax loses float64's precision: compute in the input's own dtype, without a "
                       "detour through float32."),
        )
    oracle = x.cumsum(1) / torch.arange(1, T + 1, dtype=dtype).view(1, T, 1)
    for method in METHODS:

        def dtype_error(line: str, error: str, method=method) -> str:
            if any(sign in error for sign in DTYPE_ERRORS):
                return (f"{_quoted(line)} mixes x ({name}) with a tensor made inside {method} in another dtype: "
                        "create your (T, T) tensors with dtype=x.dtype and device=x.device.")
            return ""

        got = call(getattr(module, method), x, explain=dtype_error)
        expect_tensor(got, f"{method} of a {name} tensor", tuple(x.shape))
        if got.dtype != dtype:
            raise CheckFailure(f"{method} of a {name} tensor has dtype {got.dtype}, expected {dtype}.\n" + cause(
                f"Create your (T, T) tensors with dtype=x.dtype, so that a {name} input gives a {name} output."))
        rtol, atol = (1e-5, 1e-6) if dtype == torch.float32 else (1e-10, 1e-12)
        if not torch.allclose(got, oracle, rtol, atol):  # wrong weights, not the dtype: say which
            assert_close(got, oracle, f"{method} of a {name} tensor", rtol, atol, hint=averaging_hint(impl, method))


def causal_mask_problem(mask, T: int) -> str:
    """What is wrong with `mask`, the learner's causal_mask(T), in a learner's words ('' when it is right)."""
    if not isinstance(mask, torch.Tensor):
        return f"causal_mask({T}) should be a torch.Tensor, but it is a {type(mask).__name__}."
    if tuple(mask.shape) != (T, T):
        size = (f"({mask.shape[0]}, {mask.shape[1]}): it is not sized by T. Build it from the T you are given "
                "(torch.ones(T, T)), not from a fixed size such as block_size or n_embd"
                if mask.dim() == 2 and mask.shape[0] == mask.shape[1] else f"{tuple(mask.shape)}")
        return f"causal_mask({T}) has shape {size}; it must be (T, T) = ({T}, {T})."
    if mask.is_floating_point() and torch.isneginf(mask).any():
        return ("Your causal_mask holds -inf and 0, the additive mask that goes on the scores. causal_mask is the bool "
                "mask, True where position i may look at position j (j <= i); mask_future turns it into -inf with "
                "masked_fill. Create it with dtype=torch.bool.")
    if mask.dtype != torch.bool:
        return (f"causal_mask({T}) has dtype {mask.dtype}, expected torch.bool: True where position i may look at "
                "position j (j <= i), False elsewhere. Create it with dtype=torch.bool.")
    expected = torch.tril(torch.ones(T, T, dtype=torch.bool))
    if torch.equal(mask, expected):
        return ""
    if torch.equal(mask, torch.tril(expected, diagonal=-1)):
        return "The diagonal is False: a position must be able to look at itself. Use torch.tril with diagonal=0."
    if torch.equal(mask, ~expected):
        return "Your mask is inverted: True must mean 'may look' (j <= i), False the masked future."
    if torch.equal(mask, expected.T) or torch.equal(mask, torch.triu(expected.T, diagonal=1)):
        return ("Your mask is upside down, the upper triangle: True must be where j <= i (the past), the lower one. "
                "Use torch.tril.")
    return "mask[i, j] must be True exactly when j <= i."


@check("causal_mask(T) is the (T, T) bool lower triangle, diagonal included", points=2)
@given(T=st.integers(1, 20))
@example(T=5)  # first, so that a wrong mask is shown on a grid big enough to read
@settings(max_examples=10)
def causal_mask_is_lower_triangular(impl, T):
    mask = impl.module("softmax").causal_mask(T)
    problem = causal_mask_problem(mask, T)
    if not problem:
        return
    if not isinstance(mask, torch.Tensor) or mask.shape != (T, T) or mask.dtype != torch.bool:
        raise CheckFailure(f"causal_mask({T}) is not the ({T}, {T}) bool mask.\n{cause(problem)}")
    expected = torch.tril(torch.ones(T, T, dtype=torch.bool))
    i, j = (mask != expected).nonzero()[0].tolist()
    raise CheckFailure(
        f"causal_mask({T})[{i}, {j}] is {bool(mask[i, j])}, expected {bool(expected[i, j])}.\n"
        f"Yours for T={min(T, 6)}:\n{_grid(mask[:6, :6])}\n{cause(problem)}"
    )


def mask_future_problem(got, scores: torch.Tensor) -> str:
    """What is wrong with `got`, the learner's mask_future(scores), in a learner's words ('' when it is right)."""
    T = scores.shape[-1]
    name = f"mask_future(scores of shape {tuple(scores.shape)})"
    if not isinstance(got, torch.Tensor):
        return f"{name} should be a torch.Tensor, but it is a {type(got).__name__}."
    if got.shape != scores.shape:
        return (f"{name} has shape {tuple(got.shape)}: it must keep the shape of scores. Build the (T, T) mask from "
                "the last dimension, T = scores.shape[-1]; it broadcasts over any leading dimensions.")
    if got.dtype != scores.dtype:
        return f"{name} has dtype {got.dtype}, expected {scores.dtype}: masked_fill keeps the scores' dtype."
    future = ~torch.tril(torch.ones(T, T, dtype=torch.bool))
    if torch.equal(got, scores.masked_fill(future, NEG_INF)):
        return ""
    below = torch.tril(torch.ones(T, T, dtype=torch.bool), diagonal=-1)
    diagonal = torch.eye(T, dtype=torch.bool)
    future_inf = bool(torch.isneginf(got[..., future]).all()) if future.any() else True
    future_kept = torch.equal(got[..., future], scores[..., future])
    below_inf = bool(torch.isneginf(got[..., below]).all()) if below.any() else False
    diagonal_inf = bool(torch.isneginf(got[..., diagonal]).any())
    if future.any() and (got[..., future] == 0).all():
        return ("The future is filled with 0 instead of -inf. exp(0) = 1, so after softmax the future still gets "
                "weight; only -inf becomes exactly 0.")
    if future.any() and future_kept and diagonal_inf:
        return ("The mask is used the wrong way round: you filled where causal_mask is True (the positions that may "
                "be seen). Fill where it is False, masked_fill(~mask, float('-inf')), so only j > i becomes -inf.")
    if future.any() and below_inf and not future_inf:
        return ("Your mask is upside down: you masked the past (below the diagonal) instead of the future. Only "
                "j > i gets -inf: fill where the lower triangle, torch.tril, is False.")
    if diagonal_inf:
        return "The diagonal is masked too: position i may look at itself, so only j > i gets -inf."
    if not future_inf:
        return "Every position above the diagonal (j > i, the future) must be -inf."
    if torch.isneginf(got[..., ~future]).any():
        return "Only the future, j > i, gets -inf; the past and the diagonal stay as they are."
    return "Where j <= i, the scores must come back unchanged."


def mask_future_error(line: str, error: str) -> str:
    if any(sign in error for sign in SHAPE_ERRORS):
        return (f"{_quoted(line)} meets a mask whose size does not match the scores: build the (T, T) mask from the "
                "last dimension, T = scores.shape[-1]; it broadcasts over any leading dimensions.")
    return ""


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
    got = call(impl.module("softmax").mask_future, scores, explain=mask_future_error)
    problem = mask_future_problem(got, scores)
    if not problem:
        return
    name = f"mask_future(scores of shape {tuple(scores.shape)})"
    if not isinstance(got, torch.Tensor) or got.shape != scores.shape or got.dtype != scores.dtype:
        raise CheckFailure(f"{name} does not keep the shape and dtype of scores.\n{cause(problem)}")
    expected = scores.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), NEG_INF)
    wrong = (got != expected) & ~(torch.isnan(got) & torch.isnan(expected))
    where = [int(i) for i in wrong.nonzero()[0]]
    raise CheckFailure(
        f"{name} at index {where} is {got[tuple(where)].item():.6g}, expected {expected[tuple(where)].item():.6g}.\n"
        f"{cause(problem)}"
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


def parts_problem(module) -> str:
    """What is wrong with causal_mask or mask_future, the parts average_softmax is built from ('' when
    both are right, or when they raise: their own checks say why)."""
    T = 4
    scores = torch.randn(2, T, T, generator=torch.Generator().manual_seed(0))
    try:
        problem = causal_mask_problem(module.causal_mask(T), T)
        if problem:
            return f"Your causal_mask is wrong, and average_softmax builds on it (through mask_future). {problem}"
        problem = mask_future_problem(module.mask_future(scores), scores)
    except LearnerError:
        return ""
    return f"Your mask_future is wrong, and average_softmax builds on it. {problem}" if problem else ""


_diagnosed: dict = {}


def diagnosed_once(diagnose):
    """`diagnose(impl, name)`, computed once per implementation and name. It depends on the learner's
    code alone, not on the drawn example, and hypothesis runs a failing check many times while it
    shrinks and explains the failure: diagnosing each time could use up the check's time limit."""

    def once(impl, name: str) -> str:
        if _diagnosed.get("impl") is not impl:
            _diagnosed.clear()
            _diagnosed["impl"] = impl
        key = (diagnose.__name__, name)
        if key not in _diagnosed:
            _diagnosed[key] = diagnose(impl, name)
        return _diagnosed[key]

    return once


@diagnosed_once
def mask_problem(impl, name: str) -> str:
    """What is wrong with the mask of an averaging method: for average_softmax, the parts it is built
    from first, then the direction of its weights ('' when neither is wrong)."""
    module = impl.module("softmax")
    if name != "average_softmax":
        return mask_direction_problem(averaging_weights(getattr(module, name), 4))
    weights = averaging_weights(module.average_softmax, 4)
    unmasked = weights.shape == (4, 4) and torch.allclose(weights, torch.full((4, 4), 0.25))
    return parts_problem(module) or mask_direction_problem(weights) or (
        "average_softmax does not mask the future: every position averages the whole sequence. Apply mask_future "
        "to the scores before the softmax." if unmasked else "")


@diagnosed_once
def averaging_hint(impl, name: str) -> str:
    """What is wrong with a method's weights, read off by feeding it the identity; for average_softmax,
    first whether the parts it is built from are right."""
    T = 4
    w = averaging_weights(getattr(impl.module("softmax"), name), T)
    if tuple(w.shape) != (T, T):
        return ""
    ones = torch.tril(torch.ones(T, T))
    right = ones / ones.sum(1, keepdim=True)
    shown = (
        f"\nThe weights your {name} applies for T={T} (row t: the weight of each input in output t):\n{_grid(w)}\n"
        f"expected:\n{_grid(right)}"
    )
    found = mask_problem(impl, name)
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
        found = "Weights above the diagonal: the average includes the future. Mask positions j > t" + (
            ": apply mask_future to the scores before the softmax." if name == "average_softmax" else ".")
    elif (w.diagonal().abs() < 1e-6).any():
        found = "Position t itself gets no weight: the average must include it (x[b, :t+1], the diagonal included)."
    else:
        return "Row t must be 1/(t+1) on columns 0..t and 0 after." + shown
    return cause(found) + shown


def averaging_error(line: str, error: str) -> str:
    if not any(sign in error for sign in SHAPE_ERRORS):
        return ""
    if "@" in line or "matmul" in line or "bmm" in line:
        return (f"`{line}` multiplies tensors whose shapes do not fit: x is (B, T, C), and the (T, T) weights "
                "multiply it as weights @ x (x @ weights would multiply over C).")
    return (f"{_quoted(line)} combines tensors whose shapes do not match: x is (B, T, C), the weights are (T, T) "
            "with T = x.shape[1], and out has x's shape.")


@check("the three averages agree with each other and with the running mean", points=3)
@given(B=st.integers(1, 3), T=st.integers(1, 12), C=st.integers(1, 5), seed=st.integers(0, 1000))
@settings(max_examples=15)
def averages_agree(impl, B, T, C, seed):
    module = impl.module("softmax")
    x = torch.randn(B, T, C, generator=torch.Generator().manual_seed(seed))
    oracle = (x.double().cumsum(1) / torch.arange(1, T + 1, dtype=torch.float64).view(1, T, 1)).float()
    for method in METHODS:
        got = call(getattr(module, method), x, explain=averaging_error)
        name = f"{method}(x of shape {(B, T, C)})"
        expect_tensor(got, name, (B, T, C), torch.float32)
        if not torch.allclose(got, oracle, 1e-5, 1e-6, equal_nan=False):
            hint = f"out[b, t] is the mean of x[b, 0..t].\n{averaging_hint(impl, method)}"
            assert_close(got, oracle, name, 1e-5, 1e-6, hint=hint)


@check("each average depends only on the past (the dependency map)", points=2)
@given(T=st.integers(1, 8))
@settings(max_examples=4)
def averaging_is_causal(impl, T):
    module = impl.module("softmax")
    x = torch.randn(2, T, 3)
    for method in METHODS:
        deps = dependency_map(getattr(module, method), x, perturb_vector)
        direction = mask_problem(impl, method)
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
                "with PyTorch's whole-tensor ops (median of 5 runs of 10 calls, CPU time).\n" + cause(
                    "The work grows with the sequence length, so there is a Python loop over positions (or over "
                    "rows). Build the (T, T) weights with whole-tensor operations (torch.tril, masked_fill, your "
                    "softmax along dim=-1) and average with one matmul, weights @ x. On a GPU, each call in such a "
                    "loop is a separate kernel launch.")
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
