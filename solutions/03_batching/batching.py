"""Stage 03: feeding a language model, and measuring it honestly.

A language model learns from one long stream of token ids. This stage turns that stream
into training data and measures the model on it:

1. `train_val_split`: keep the end of the text aside, unseen in training, to notice
   when the model starts memorizing instead of learning.
2. `get_batch`: random windows of `block_size` tokens, each with its targets, the same
   window moved one token to the right. One window teaches `block_size` predictions at
   once: token t+1 from tokens 0..t, for every t.
3. `SequentialLoader`: the same windows in order, for when every token should be seen
   exactly once per pass over the data.
4. `estimate_loss`: the average loss over many batches, in eval mode and without
   gradients, so that the number is smooth, comparable between train and val, and cheap.

Run this file for a quick demo: `python exercises/03_batching/batching.py`.
"""
from __future__ import annotations

import torch
import torch.nn as nn


def train_val_split(data: torch.Tensor, train_fraction: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a 1-D token tensor into its beginning (train) and its end (validation).

    The first `n = int(train_fraction * len(data))` tokens are the training data, the rest
    the validation data, both in their original order and with `data`'s dtype. No
    shuffling: neighbouring tokens belong together, and a validation text cut out of the
    middle of training sentences would not measure anything new.

    Returns:
        (train, val): 1-D tensors of lengths n and len(data) - n.
    """
    ### BEGIN SOLUTION
    n = int(train_fraction * len(data))
    return data[:n], data[n:]
    ### END SOLUTION


def get_batch(
    data: torch.Tensor,
    batch_size: int,
    block_size: int,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` random windows of `block_size` tokens from `data`, with their targets.

    Each row starts at a random position i, drawn uniformly from every start whose
    targets still fit: 0 <= i <= len(data) - block_size - 1, so the last window's targets
    end exactly at the last token. Row b of x is data[i : i + block_size], and row b of y
    is data[i + 1 : i + block_size + 1]: y[b, t] is the token that follows x[b, t].

    Args:
        data: a 1-D int64 tensor with at least block_size + 1 tokens.
        generator: the source of randomness (the global one when None), so that the
            same seed gives the same batches.
        device: where x and y are returned ("cpu", "cuda", ...).
    Returns:
        (x, y): two int64 tensors of shape (batch_size, block_size) on `device`.
    """
    ### BEGIN SOLUTION
    # Hint: torch.randint(high, (batch_size,), generator=generator) draws the starts
    #   in [0, high); torch.stack turns a list of windows into rows.
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    x = torch.stack([data[i : i + block_size] for i in starts])
    y = torch.stack([data[i + 1 : i + block_size + 1] for i in starts])
    return x.to(device), y.to(device)
    ### END SOLUTION


class SequentialLoader:
    """The stream's (input, target) pairs in order, batch after batch, without end.

    Position p of `data` gives the pair (data[p], data[p + 1]), for p = 0 .. len(data) - 2;
    the last token is never an input, because nothing follows it. `next_batch` takes the
    next batch_size * block_size pairs in this order and lays them out row by row. After
    the last pair comes pair 0 again: a batch that reaches the end continues from the
    beginning, so over every len(data) - 1 consecutive pairs each position is an input
    exactly once, nothing is skipped, nothing repeated, and no target is made up (the last
    token is never followed by the first).
    """

    def __init__(self, data: torch.Tensor, batch_size: int, block_size: int, device: str | torch.device = "cpu"):
        """`data`: a 1-D int64 tensor with at least 2 tokens. Starts at position 0."""
        self.data = data
        self.batch_size = batch_size
        self.block_size = block_size
        self.device = device
        ### BEGIN SOLUTION
        # Hint: the loader has to remember where in the stream the next batch starts.
        self.position = 0  # the input position the next batch starts at
        ### END SOLUTION

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next (x, y): int64 tensors of shape (batch_size, block_size) on the loader's device.

        x.flatten() holds the next batch_size * block_size input positions of the stream
        (wrapping as described above), and y[b, t] is the token that follows x[b, t] in data.
        """
        ### BEGIN SOLUTION
        # Hint: keep the position of the next input in self; the positions of a batch
        #   are consecutive modulo the number of pairs, len(data) - 1.
        n_pairs = len(self.data) - 1
        count = self.batch_size * self.block_size
        # Modular positions make a batch that crosses the end (even several times, on a
        # tiny stream) continue from the beginning with nothing dropped or repeated.
        positions = (self.position + torch.arange(count)) % n_pairs
        x = self.data[positions].view(self.batch_size, self.block_size)
        y = self.data[positions + 1].view(self.batch_size, self.block_size)
        self.position = (self.position + count) % n_pairs
        return x.to(self.device), y.to(self.device)
        ### END SOLUTION


def estimate_loss(
    model: nn.Module,
    splits: dict[str, torch.Tensor],
    batch_size: int,
    block_size: int,
    eval_iters: int,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """The model's average loss on each split, over `eval_iters` random batches per split.

    `model(x, y)` returns `(logits, loss)` with `loss` a 0-dim tensor. The batches come
    from `get_batch(split_data, batch_size, block_size, generator, device)`. The model runs
    in eval mode (dropout off) and without building a graph (`torch.no_grad()`), and is
    put back in the mode it was in: a model that was training keeps training afterwards,
    a model that was in eval mode stays in eval mode.

    Args:
        splits: name -> 1-D int64 token tensor, e.g. {"train": train_data, "val": val_data}.
    Returns:
        {name: average loss as a Python float} for every name in `splits`.
    """
    ### BEGIN SOLUTION
    # Hint: remember model.training before calling model.eval(); model.train(mode)
    #   restores it. loss.item() turns a 0-dim tensor into a float.
    was_training = model.training
    model.eval()
    out = {}
    with torch.no_grad():
        for name, data in splits.items():
            losses = torch.zeros(eval_iters)
            for k in range(eval_iters):
                x, y = get_batch(data, batch_size, block_size, generator, device)
                _, loss = model(x, y)
                losses[k] = loss.item()
            out[name] = losses.mean().item()
    model.train(was_training)
    return out
    ### END SOLUTION


class _DemoBigram(nn.Module):
    """A tiny bigram model with dropout, only for the demo below."""

    def __init__(self, vocab_size: int):
        super().__init__()
        self.table = nn.Embedding(vocab_size, vocab_size)
        self.dropout = nn.Dropout(0.3)

    def forward(self, idx, targets):
        logits = self.dropout(self.table(idx))
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss


DEMO_TEXT = (
    "the cat sat on the mat. the dog sat on the log. a cat and a dog met on a mat, "
    "and the cat said to the dog: what a fine log you have. "
) * 20


if __name__ == "__main__":
    chars = sorted(set(DEMO_TEXT))
    data = torch.tensor([chars.index(c) for c in DEMO_TEXT])
    train_data, val_data = train_val_split(data)
    print(f"{len(data)} tokens: {len(train_data)} for training, {len(val_data)} for validation")

    generator = torch.Generator().manual_seed(1337)
    x, y = get_batch(train_data, 2, 8, generator)
    for b in range(2):
        print("x:", repr("".join(chars[i] for i in x[b])), " y:", repr("".join(chars[i] for i in y[b])))

    loader = SequentialLoader(torch.arange(7), batch_size=2, block_size=2)
    print("a stream of 7 tokens, batches of 2 x 2, in order:")
    for _ in range(3):
        x, y = loader.next_batch()
        print("  x", x.tolist(), "y", y.tolist())

    torch.manual_seed(0)
    model = _DemoBigram(len(chars))
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    splits = {"train": train_data, "val": val_data}
    for step in range(301):
        if step % 100 == 0:
            losses = estimate_loss(model, splits, 16, 8, 20, generator)
            print(f"step {step:3d}: train {losses['train']:.3f}, val {losses['val']:.3f}, still training: {model.training}")
        x, y = get_batch(train_data, 16, 8, generator)
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
