"""A correct but naive BPE tokenizer, written the way many learners start (minbpe-style).

Test data for tests/test_naive_bpe.py: it follows the contract of exercises/01_bpe/bpe.py,
but `train` keeps every pre-token of the text (no counting of distinct ones) and recounts
every pair of every pre-token before each merge, as the handout's "a plain version ... is a
fine place to start" suggests. The grader must grade it within the stage's time limits:
every correctness check passes, and only the speed check fails, with its own message.
"""
from __future__ import annotations

import json
import os

import regex

GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+|"""
    r""" ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
FILE_FORMAT = "scratchgpt-bpe"
FILE_VERSION = 1


def split_on_special(text, special_tokens):
    specials = sorted(set(special_tokens), key=len, reverse=True)
    if not specials:
        return [text]
    return regex.split("(" + "|".join(regex.escape(s) for s in specials) + ")", text)


def get_stats(ids, counts=None, weight=1):
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def merge(ids, pair, new_id):
    out = []
    i = 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class Tokenizer:
    def __init__(self, pattern=GPT4_SPLIT_PATTERN):
        self.pattern = pattern
        self.merges = {}
        self.special_tokens = {}
        self.byte_ids = list(range(256))
        self.vocab = self._build_vocab()

    def _build_vocab(self):
        vocab = {idx: bytes([b]) for b, idx in enumerate(self.byte_ids)}
        for (left, right), idx in self.merges.items():
            vocab[idx] = vocab[left] + vocab[right]
        for special, idx in self.special_tokens.items():
            vocab[idx] = special.encode("utf-8")
        return vocab

    def train(self, text, vocab_size, special_tokens=()):
        special_tokens = list(special_tokens)
        if len(set(special_tokens)) != len(special_tokens) or "" in special_tokens:
            raise ValueError("special tokens must be distinct and non-empty")
        num_merges = vocab_size - 256 - len(special_tokens)
        if num_merges < 0:
            raise ValueError(f"vocab_size={vocab_size} leaves no room for the special tokens")
        chunks = []
        for piece in split_on_special(text, special_tokens)[::2]:
            chunks += [list(word.encode("utf-8")) for word in regex.findall(self.pattern, piece)]
        merges = {}
        for k in range(num_merges):
            stats = {}
            for chunk in chunks:
                get_stats(chunk, stats)
            if not stats:
                break
            best = max(stats.values())
            pair = min(p for p, count in stats.items() if count == best)
            merges[pair] = 256 + k
            chunks = [merge(chunk, pair, 256 + k) for chunk in chunks]
        self.merges = merges
        self.byte_ids = list(range(256))
        self.special_tokens = {s: 256 + len(merges) + i for i, s in enumerate(special_tokens)}
        self.vocab = self._build_vocab()

    def _encode_chunk(self, chunk):
        ids = [self.byte_ids[b] for b in chunk]
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: self.merges.get(p, float("inf")))
            if pair not in self.merges:
                break
            ids = merge(ids, pair, self.merges[pair])
        return ids

    def encode(self, text):
        ids = []
        for i, part in enumerate(split_on_special(text, self.special_tokens)):
            if i % 2:
                ids.append(self.special_tokens[part])
            else:
                for word in regex.findall(self.pattern, part):
                    ids += self._encode_chunk(word.encode("utf-8"))
        return ids

    def decode(self, ids):
        for i in ids:
            if i not in self.vocab:
                raise ValueError(f"unknown token id {i}")
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")

    def save(self, path):
        data = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "pattern": self.pattern,
            "merges": [[a, b, idx] for (a, b), idx in self.merges.items()],
            "special_tokens": self.special_tokens,
            "byte_ids": self.byte_ids,
        }
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False)

    @classmethod
    def load(cls, path):
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise ValueError(f"not a tokenizer file: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FILE_FORMAT or data.get("version") != FILE_VERSION:
            raise ValueError("not a tokenizer file of this format")
        tok = cls(data["pattern"])
        tok.merges = {(a, b): idx for a, b, idx in data["merges"]}
        tok.special_tokens = dict(data["special_tokens"])
        tok.byte_ids = list(data["byte_ids"])
        tok.vocab = tok._build_vocab()
        return tok


def recover_merges(mergeable_ranks):
    merges = {}
    for token, rank in sorted(mergeable_ranks.items(), key=lambda item: item[1]):
        if len(token) == 1:
            continue
        parts = [bytes([b]) for b in token]
        while True:
            best = None
            for i in range(len(parts) - 1):
                r = mergeable_ranks.get(parts[i] + parts[i + 1])
                if r is not None and r < rank and (best is None or r < best[0]):
                    best = (r, i)
            if best is None:
                break
            i = best[1]
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        if len(parts) != 2:
            raise ValueError(f"token {token!r} of rank {rank} is not the merge of two lower-ranked tokens")
        merges[(mergeable_ranks[parts[0]], mergeable_ranks[parts[1]])] = rank
    return merges


def from_tiktoken_ranks(mergeable_ranks, special_tokens=None, pattern=GPT4_SPLIT_PATTERN):
    byte_ids = []
    for b in range(256):
        if bytes([b]) not in mergeable_ranks:
            raise ValueError(f"mergeable_ranks has no token for the single byte {b}")
        byte_ids.append(mergeable_ranks[bytes([b])])
    tok = Tokenizer(pattern)
    tok.byte_ids = byte_ids
    tok.merges = recover_merges(mergeable_ranks)
    tok.special_tokens = dict(special_tokens or {})
    tok.vocab = tok._build_vocab()
    return tok
