"""The textbook BPE trainer: recount every pair before every merge.

Same semantics and tie-break as ``Tokenizer.train`` in
``solutions/01_bpe/bpe.py`` (split on special tokens, pre-tokenize with the
regex, count overlapping pairs over distinct pre-tokens weighted by frequency,
take the most frequent pair and, among ties, the smallest ``(left, right)``),
but written independently and as plainly as possible. It is the baseline of
``benchmarks/bpe_train.py`` and a second opinion on the reference's merges.
Only the split pattern is imported from the reference.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import regex

_BPE_PATH = Path(__file__).resolve().parent.parent / "solutions" / "01_bpe" / "bpe.py"


def _load_reference():
    spec = importlib.util.spec_from_file_location("_reference_bpe", _BPE_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GPT4_SPLIT_PATTERN = _load_reference().GPT4_SPLIT_PATTERN


def train_naive(text: str, vocab_size: int, special_tokens=(),
                pattern: str = GPT4_SPLIT_PATTERN) -> dict[tuple[int, int], int]:
    """Return the merges ``(left, right) -> new_id`` (in merge order)."""
    special_tokens = list(special_tokens)
    num_merges = vocab_size - 256 - len(special_tokens)
    if num_merges < 0:
        raise ValueError(f"vocab_size must be at least {256 + len(special_tokens)}")

    pieces = [text]
    if special_tokens:
        longest_first = sorted(special_tokens, key=len, reverse=True)
        alternatives = "|".join(regex.escape(s) for s in longest_first)
        pieces = regex.split(alternatives, text)  # no capturing group: specials are dropped
    word_freq = Counter()
    for piece in pieces:
        word_freq.update(regex.findall(pattern, piece))
    words = [list(w.encode("utf-8")) for w in word_freq]
    freqs = list(word_freq.values())

    merges = {}
    for k in range(num_merges):
        counts = Counter()
        for word, freq in zip(words, freqs):
            for i in range(len(word) - 1):
                counts[word[i], word[i + 1]] += freq
        if not counts:
            break  # nothing left to merge
        pair = min(counts, key=lambda p: (-counts[p], p))
        new_id = 256 + k
        merges[pair] = new_id
        for w, word in enumerate(words):
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == pair:
                    out.append(new_id)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            words[w] = out
    return merges
