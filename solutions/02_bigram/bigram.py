"""Stage 02: a bigram language model, first by counting, then as a neural network.

A bigram model predicts the next character from the current one only. You build it twice:

1. By counting: how often does character b follow character a? Normalize the counts into
   probabilities, and measure how surprised the model is by real text (the average
   negative log-likelihood, the same number a neural network calls its loss).
2. As `nn.Embedding(V, V)`: row a of the table holds the logits of the next character.
   Trained with cross-entropy, it learns the same probabilities the counts give.

Run this file for a quick demo: `python exercises/02_bigram/bigram.py`.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def build_vocab(text: str) -> list[str]:
    """The distinct characters of `text`, sorted. Character `chars[i]` has id `i`."""
    ### BEGIN SOLUTION
    return sorted(set(text))
    ### END SOLUTION


def encode(text: str, chars: list[str]) -> list[int]:
    """The id of every character of `text`, using the vocabulary `chars` from `build_vocab`."""
    ### BEGIN SOLUTION
    # Hint: build a dict from character to id once, then look each character up.
    stoi = {ch: i for i, ch in enumerate(chars)}
    return [stoi[ch] for ch in text]
    ### END SOLUTION


def decode(ids: list[int], chars: list[str]) -> str:
    """The text whose characters have these ids: `decode(encode(s, chars), chars) == s`."""
    ### BEGIN SOLUTION
    return "".join(chars[i] for i in ids)
    ### END SOLUTION


def bigram_counts(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """How often each id follows each other id.

    Args:
        ids: a 1-D int64 tensor of token ids, each in [0, vocab_size).
    Returns:
        An int64 tensor `counts` of shape (vocab_size, vocab_size) where `counts[a, b]` is
        the number of positions t with ids[t] == a and ids[t + 1] == b. Row = current
        token, column = next token.
    """
    ### BEGIN SOLUTION
    # Hint: pair each id with the next one (ids[:-1] and ids[1:]). A Python loop works;
    #   torch.bincount on a * vocab_size + b is much faster.
    pairs = ids[:-1] * vocab_size + ids[1:]
    return torch.bincount(pairs, minlength=vocab_size * vocab_size).view(vocab_size, vocab_size)
    ### END SOLUTION


def bigram_probs(counts: torch.Tensor, smoothing: float = 1.0) -> torch.Tensor:
    """Turn counts into next-token probabilities, with add-`smoothing` (Laplace) smoothing.

    Adding `smoothing` to every count before normalizing means no pair gets probability
    exactly zero, so a pair never seen in training does not make the loss infinite.

    Returns:
        A float32 tensor of shape (V, V) whose rows each sum to 1:
        `probs[a, b] = (counts[a, b] + smoothing) / sum_c (counts[a, c] + smoothing)`.
    """
    ### BEGIN SOLUTION
    smoothed = counts.float() + smoothing
    return smoothed / smoothed.sum(dim=1, keepdim=True)
    ### END SOLUTION


def average_nll(probs: torch.Tensor, ids: torch.Tensor) -> float:
    """The average negative log-likelihood of the sequence `ids` under `probs`.

    `-(1 / (N - 1)) * sum_t log probs[ids[t], ids[t + 1]]` over the N - 1 pairs of
    neighbours. Lower is better; the uniform model scores ln(V). Returns a Python float.
    """
    ### BEGIN SOLUTION
    return -probs[ids[:-1], ids[1:]].log().mean().item()
    ### END SOLUTION


class BigramLanguageModel(nn.Module):
    """Row `a` of `token_embedding_table` holds the logits of the token that follows `a`."""

    def __init__(self, vocab_size: int):
        super().__init__()
        ### BEGIN SOLUTION
        # Hint: one nn.Embedding(vocab_size, vocab_size), named token_embedding_table.
        self.token_embedding_table = nn.Embedding(vocab_size, vocab_size)
        ### END SOLUTION

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """Logits for the next token at every position, and the loss when targets are given.

        Args:
            idx: (B, T) int64 token ids.
            targets: (B, T) int64, the token that follows each position of idx, or None.
        Returns:
            (logits, loss): logits of shape (B, T, V); loss is the mean cross-entropy over
            all B*T positions as a 0-dim tensor, or None when targets is None.
        """
        ### BEGIN SOLUTION
        # Hint: F.cross_entropy wants (N, V) logits and (N,) targets: flatten B and T
        #   together for the loss, but return the logits as (B, T, V).
        logits = self.token_embedding_table(idx)
        if targets is None:
            return logits, None
        B, T, V = logits.shape
        loss = F.cross_entropy(logits.view(B * T, V), targets.view(B * T))
        return logits, loss
        ### END SOLUTION

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """Extend each row of `idx` (B, T) by `max_new_tokens` sampled tokens: (B, T + max_new_tokens).

        At each step, take the logits at the LAST position only, turn them into
        probabilities with softmax, sample one token with `torch.multinomial`, and append
        it. Sampling (not argmax) is what makes the text varied.
        """
        ### BEGIN SOLUTION
        for _ in range(max_new_tokens):
            logits, _ = self(idx)
            probs = F.softmax(logits[:, -1, :], dim=-1)
            next_token = torch.multinomial(probs, num_samples=1)
            idx = torch.cat([idx, next_token], dim=1)
        return idx
        ### END SOLUTION


DEMO_TEXT = (
    "the cat sat on the mat. the dog sat on the log. a cat and a dog met on a mat, "
    "and the cat said to the dog: what a fine log you have. "
) * 20


if __name__ == "__main__":
    chars = build_vocab(DEMO_TEXT)
    ids = torch.tensor(encode(DEMO_TEXT, chars))
    V = len(chars)
    probs = bigram_probs(bigram_counts(ids, V))
    print(f"vocabulary: {V} characters; uniform model: {torch.log(torch.tensor(float(V))):.3f}")
    print(f"count model, average NLL: {average_nll(probs, ids):.3f}")

    torch.manual_seed(0)
    model = BigramLanguageModel(V)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    x, y = ids[:-1].view(1, -1), ids[1:].view(1, -1)
    for step in range(201):
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            print(f"step {step:3d}: loss {loss.item():.3f}")
    sample = model.generate(torch.zeros(1, 1, dtype=torch.long), max_new_tokens=80)
    print("sample:", decode(sample[0].tolist(), chars))
