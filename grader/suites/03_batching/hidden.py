"""Stage 03, hidden checks: the loader against the reference, fair sampling, honest loss estimates."""
import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grader import check
from grader.checks import CheckFailure, expect_tensor, expect_type
from grader.data import corpus
from grader.probes import BigramLossModel, evaluate_with


def fables_ids(n: int) -> tuple[torch.Tensor, int]:
    text = corpus("fables")[:n]
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    return torch.tensor([stoi[c] for c in text]), len(chars)


@check("SequentialLoader's batches on real text equal the reference's, over two passes", points=1)
def loader_matches_reference(impl, ref):
    for n, batch_size, block_size in ((2000, 4, 16), (2000, 3, 7), (300, 1, 1)):
        data, _ = fables_ids(n)
        ours = impl.module("batching").SequentialLoader(data, batch_size, block_size)
        theirs = ref.module("batching").SequentialLoader(data, batch_size, block_size)
        batches = math.ceil(2 * (len(data) - 1) / (batch_size * block_size)) + 1
        for step in range(batches):
            x, y = ours.next_batch()
            rx, ry = theirs.next_batch()
            for name, got, want in (("x", x, rx), ("y", y, ry)):
                expect_tensor(got, name, tuple(want.shape), want.dtype)
                if not torch.equal(got, want):
                    where = (got != want).nonzero()[0].tolist()
                    raise CheckFailure(
                        f"With {n} tokens, batch_size={batch_size}, block_size={block_size}: batch {step + 1}'s {name} "
                        f"differs from the reference at {where}. The loader walks positions 0 .. len(data) - 2 in "
                        "order, row by row, and continues from position 0 after the last one."
                    )


@check("get_batch draws every valid start equally often", points=1)
def starts_are_uniform(impl):
    block_size, n_starts = 7, 20
    data = torch.arange(block_size + n_starts)
    counts = torch.zeros(n_starts, dtype=torch.long)
    for seed in range(20):
        x, _ = impl.module("batching").get_batch(data, 200, block_size, torch.Generator().manual_seed(seed))
        expect_tensor(x, "x", (200, block_size), torch.int64)
        starts = x[:, 0]
        if starts.min() < 0 or starts.max() >= n_starts:
            raise CheckFailure(f"get_batch started a window at {int(starts.max())}; the valid starts are 0 .. {n_starts - 1}.")
        counts += torch.bincount(starts, minlength=n_starts)
    # 4000 draws over 20 starts: 200 each on average, with a standard deviation of about 14.
    low, high = int(counts.argmin()), int(counts.argmax())
    if counts[low] < 130 or counts[high] > 270:
        raise CheckFailure(
            f"Over 4000 windows from {len(data)} tokens (block_size={block_size}, 20 valid starts, about 200 each), "
            f"start {low} came {int(counts[low])} times and start {high} {int(counts[high])} times: the starts are "
            "not drawn uniformly. Draw them with torch.randint(len(data) - block_size, (batch_size,), generator=generator)."
        )


@check("estimate_loss on real text matches the exact expected loss of a fixed model", points=2)
def estimate_matches_exact_loss(impl):
    data, vocab_size = fables_ids(20000)
    table = 3.0 * torch.randn(vocab_size, vocab_size, generator=torch.Generator().manual_seed(0))
    splits = {"train": data[:18000], "val": data[18000:]}
    batch_size, block_size, eval_iters = 8, 32, 40
    exact = {}
    for name, d in splits.items():
        # The loss of each (token, next token) pair, then its expectation over uniformly drawn
        # windows: a window at start i averages the losses at positions i .. i + block_size - 1.
        pair_loss = torch.nn.functional.cross_entropy(table[d[:-1]], d[1:], reduction="none").double()
        window_sums = torch.nn.functional.pad(pair_loss.cumsum(0), (1, 0))
        n_starts = len(d) - block_size
        exact[name] = ((window_sums[block_size : block_size + n_starts] - window_sums[:n_starts]) / block_size).mean().item()
    model = BigramLossModel(table, dropout=0.5).train()
    seen = impl.probe(
        evaluate_with, impl.module("batching").estimate_loss, model, splits,
        batch_size, block_size, eval_iters, torch.Generator().manual_seed(0),
    )
    result = seen["result"]
    for name, expected in exact.items():
        value = result.get(name) if isinstance(result, dict) else None
        if not isinstance(value, float) or not abs(value - expected) < 0.15:
            raise CheckFailure(
                f"estimate_loss of a fixed bigram model (with dropout, handed over in training mode) on the '{name}' "
                f"split of a real text gave {value!r}; its exact expected loss there is {expected:.4f} "
                f"(estimated from {eval_iters} batches of {batch_size} x {block_size}, it should land within 0.15). "
                "Check eval mode, that each split's batches come from its own data, and that you average every batch."
            )


def expect_equal(got, want: torch.Tensor, name: str) -> None:
    """`got` is exactly the reference's tensor `want`: same shape, dtype and values."""
    expect_tensor(got, name, tuple(want.shape), want.dtype)
    if not torch.equal(got, want):
        where = (got != want).nonzero()[0].tolist()
        raise CheckFailure(f"{name} differs from the reference's at index {where}: {got.tolist()[:12]}, expected "
                           f"{want.tolist()[:12]}.")


@check("train_val_split, get_batch and SequentialLoader equal the reference's on drawn sizes", points=1)
@settings(max_examples=20)
@given(n=st.integers(2, 40), fraction=st.floats(0.05, 0.95), batch_size=st.integers(1, 4),
       block_size=st.integers(1, 8), seed=st.integers(0, 1000))
def batching_matches_reference(impl, ref, n, fraction, batch_size, block_size, seed):
    ours, theirs = impl.module("batching"), ref.module("batching")
    data = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) * 7 + 3  # distinct ids: a row shows its start
    setup = f"On {n} distinct tokens"

    result = ours.train_val_split(data, fraction)
    expect_type(result, tuple, f"train_val_split(data, {fraction})")
    if len(result) != 2:
        raise CheckFailure(f"train_val_split(data, {fraction}) returned {len(result)} items; expected (train, val).")
    for name, got, want in zip(("train", "val"), result, theirs.train_val_split(data, fraction)):
        expect_equal(got, want, f"{setup}, {name} from train_val_split(data, {fraction})")

    # get_batch draws at random, so rows are compared one by one: each row starts somewhere, and
    # the reference, given only the tokens of that one window, has no choice to make.
    T = min(block_size, n - 1)
    call = f"{setup}, get_batch(data, {batch_size}, {T}, generator)"
    x, y = ours.get_batch(data, batch_size, T, torch.Generator().manual_seed(seed))
    expect_tensor(x, f"x from {call}", (batch_size, T), torch.int64)
    expect_tensor(y, f"y from {call}", (batch_size, T), torch.int64)
    for b in range(batch_size):
        hits = (data == x[b, 0]).nonzero()
        i = int(hits[0]) if len(hits) else -1
        if not 0 <= i <= n - T - 1:
            raise CheckFailure(f"{call}: x[{b}] = {x[b].tolist()} does not begin at a valid start (0 .. {n - T - 1}).")
        rx, ry = theirs.get_batch(data[i : i + T + 1], 1, T, torch.Generator())
        expect_equal(x[b], rx[0], f"{call}: x[{b}] (the window at position {i})")
        expect_equal(y[b], ry[0], f"{call}: y[{b}] (the targets of the window at position {i})")

    loader, reference = ours.SequentialLoader(data, batch_size, block_size), theirs.SequentialLoader(data, batch_size, block_size)
    for step in range(math.ceil(2 * (n - 1) / (batch_size * block_size)) + 1):  # two passes and a bit
        batch, want = loader.next_batch(), reference.next_batch()
        expect_type(batch, tuple, "next_batch()")
        for name, got, expected in zip("xy", batch, want):
            expect_equal(got, expected, f"{setup}, SequentialLoader(data, {batch_size}, {block_size}): batch {step + 1}'s {name}")


SPLIT_NAMES = [("train", "val"), ("val",), ("train", "val", "test")]


@check("estimate_loss equals the reference's on drawn splits, sizes and models", points=1)
@settings(max_examples=6)
@given(names=st.sampled_from(SPLIT_NAMES), batch_size=st.integers(1, 4), block_size=st.integers(1, 8),
       eval_iters=st.integers(1, 3), seed=st.integers(0, 1000))
def estimate_matches_reference(impl, ref, names, batch_size, block_size, eval_iters, seed):
    generator = torch.Generator().manual_seed(seed)
    vocab_size = 7
    table = 2.0 * torch.randn(vocab_size, vocab_size, generator=generator)
    # Each split holds exactly one window, so every batch is that window whatever the draws:
    # any correct estimate_loss returns that window's loss in eval mode, as the reference does.
    splits = {name: torch.randint(0, vocab_size, (block_size + 1,), generator=generator) for name in names}
    args = (splits, batch_size, block_size, eval_iters, torch.Generator().manual_seed(seed))
    got = impl.probe(evaluate_with, impl.module("batching").estimate_loss, BigramLossModel(table).train(), *args)["result"]
    want = ref.module("batching").estimate_loss(BigramLossModel(table).train(), *args)
    call = f"estimate_loss(a bigram model with dropout, splits {list(names)}, {batch_size}, {block_size}, {eval_iters})"
    expect_type(got, dict, call)
    if sorted(got) != sorted(want):
        raise CheckFailure(f"{call} returned keys {sorted(got)}; expected {sorted(want)}.")
    for name, expected in want.items():
        value = got[name]
        if type(value) is not float or not abs(value - expected) <= 1e-5 * max(1.0, abs(expected)):
            raise CheckFailure(
                f"{call}['{name}'] is {value!r}; the reference gives {expected:.6f}. That split holds one window, so "
                "every batch is that window, and its loss in eval mode is the answer."
            )
