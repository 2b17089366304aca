"""Stage 03, hidden checks: the loader against the reference, fair sampling, honest loss estimates."""
import math

import torch

from grader import check
from grader.checks import CheckFailure, expect_tensor
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
