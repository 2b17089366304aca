"""
Stage 01 -- a byte-level BPE tokenizer, from scratch.

A language model never sees text. It sees a list of integers ("token ids"), and
the tokenizer is the thing that turns one into the other and back again::

    tok = Tokenizer()
    tok.train(some_text, vocab_size=512)
    ids = tok.encode("hello world")      # a short list of ints
    tok.decode(ids)                      # "hello world" again

Byte Pair Encoding (BPE) in one paragraph: write the text as UTF-8 bytes, so
every string is a list of ids in 0..255 and nothing is ever "unknown". Then,
again and again, find the adjacent pair of ids that occurs most often and
replace every occurrence of it with a brand-new id (256, 257, ...). Each such
replacement is a *merge*; the ordered list of merges IS the tokenizer.
Encoding new text replays the merges; decoding looks up the bytes of each id.

This is the same scheme GPT-2, GPT-4 (tiktoken's ``cl100k_base``) and Llama 3 use.
Two extra ideas make it practical:

* **Pre-tokenization.** Before counting pairs the text is cut into chunks with
  a regular expression (``GPT4_SPLIT_PATTERN``): words, numbers of up to three
  digits, runs of punctuation, whitespace... Merges never cross a chunk
  boundary, so you never get a token like ``"dog."`` or ``"e t"``.
* **Special tokens.** Strings such as ``"<|endoftext|>"`` get one id of their
  own. They are cut out of the text *before* anything else happens, are never
  merged with their neighbours, and no merge ever spans across one.

What you write in this file (each ``raise NotImplementedError`` in your copy):

1. ``get_stats``        -- count adjacent pairs in a list of ids
2. ``merge``            -- replace every occurrence of a pair by a new id
3. ``Tokenizer.train``  -- learn the merges from a text
4. ``Tokenizer._encode_chunk`` -- encode one pre-token by replaying merges
5. ``Tokenizer.encode`` -- special tokens + pre-tokenization + step 4
6. ``Tokenizer.decode`` -- ids back to a string
7. ``Tokenizer.save`` / 8. ``Tokenizer.load`` -- one JSON file
9. ``recover_merges``   -- rebuild GPT-4's merge list from tiktoken's ranks

Only the standard library and the third-party ``regex`` module are used (the
built-in ``re`` does not understand ``\\p{L}`` or possessive quantifiers).

Run ``python bpe.py`` for a small demo once your functions are written.
"""

from __future__ import annotations

import heapq
import json
import os
from collections import Counter, defaultdict
from typing import Iterable

import regex

# The pre-tokenization pattern of GPT-4's ``cl100k_base`` encoding, exactly as
# tiktoken ships it. Read it as "try these alternatives, left to right":
#   '(?i:[sdmt]|ll|ve|re)         contractions: 's 't 'll 've 're 'm 'd (any case)
#   [^\r\n\p{L}\p{N}]?+\p{L}++     a word: letters, maybe one leading non-letter (" hello")
#   \p{N}{1,3}+                    numbers, in groups of at most three digits
#    ?[^\s\p{L}\p{N}]++[\r\n]*+    punctuation, maybe with one leading space
#   \s++$                          whitespace at the very end of the text
#   \s*[\r\n]                      whitespace ending in a newline
#   \s+(?!\S)                      whitespace, but leave the last space for the next word
#   \s                             any single leftover whitespace character
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+|"""
    r""" ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

# Written at the top of every saved file so that ``load`` can refuse files that
# are not ours instead of failing with a confusing KeyError.
FILE_FORMAT = "scratchgpt-bpe"
FILE_VERSION = 1


# ----------------------------------------------------------------------------
# Given helpers


def split_on_special(text: str, special_tokens: Iterable[str]) -> list[str]:
    """Cut ``text`` around every occurrence of a special token.

    Returns a list that alternates *ordinary text* and *special token*:
    ``parts[0::2]`` (even positions) are ordinary text, possibly empty strings,
    and ``parts[1::2]`` (odd positions) are special-token strings. Joining the
    list gives back ``text``. With no special tokens the result is ``[text]``.

    If two special tokens could match at the same place (say ``"<|a|>"`` and
    ``"<|a|>x"``) the longer one wins, so the longest special token is always
    preferred.

    >>> split_on_special("hi<|eot|>yo", ["<|eot|>"])
    ['hi', '<|eot|>', 'yo']
    """
    specials = sorted(set(special_tokens), key=len, reverse=True)
    if not specials:
        return [text]
    # One capturing group: regex.split then keeps the separators, at odd positions.
    pattern = "(" + "|".join(regex.escape(s) for s in specials) + ")"
    return regex.split(pattern, text)


def render_token(token: bytes) -> str:
    """A printable form of a token's bytes, for demos and debugging.

    Invalid UTF-8 shows as the replacement character, and control characters
    (newlines, tabs...) are escaped so that they do not wreck a printout.
    """
    text = token.decode("utf-8", errors="replace")
    return "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in text)


# ----------------------------------------------------------------------------
# The two building blocks of BPE


def get_stats(ids: list[int], counts: dict[tuple[int, int], int] | None = None,
              weight: int = 1) -> dict[tuple[int, int], int]:
    """Count every adjacent pair of ids in ``ids``.

    Each position counts, even when occurrences overlap: ``[7, 7, 7]`` contains
    the pair ``(7, 7)`` twice (positions 0-1 and 1-2). Every occurrence adds
    ``weight``; this lets a caller count a word that appears 40 times in the
    text just once, with ``weight=40``.

    If ``counts`` is given, it is updated in place (and returned), so you can
    accumulate over many lists; otherwise a new dict is returned.

    >>> get_stats([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    >>> get_stats([7, 7, 7], weight=10)
    {(7, 7): 20}
    """
    ### BEGIN SOLUTION
    # Hint: zip(ids, ids[1:]) walks over the adjacent pairs.
    #   Use counts.get(pair, 0) so that missing pairs start at zero.
    if counts is None:
        counts = {}
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + weight
    return counts
    ### END SOLUTION


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Return a new list where every occurrence of ``pair`` becomes ``new_id``.

    Scan left to right; when ``ids[i], ids[i + 1]`` equals ``pair``, emit
    ``new_id`` and jump over both elements, otherwise emit ``ids[i]`` and move on
    by one. Occurrences therefore never overlap, and the leftmost one wins:
    merging ``(7, 7)`` in ``[7, 7, 7]`` gives ``[new_id, 7]``, not ``[7, new_id]``.
    The input list is not modified.

    >>> merge([1, 2, 3, 1, 2], (1, 2), 256)
    [256, 3, 256]
    >>> merge([7, 7, 7, 7, 7], (7, 7), 300)
    [300, 300, 7]
    """
    ### BEGIN SOLUTION
    # Hint: a while loop with an index i is easier here than a for loop,
    #   because you sometimes advance by 2. Mind the last element.
    out = []
    i = 0
    n = len(ids)
    first, second = pair
    while i < n:
        if i + 1 < n and ids[i] == first and ids[i + 1] == second:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out
    ### END SOLUTION


# ----------------------------------------------------------------------------
# The tokenizer


class Tokenizer:
    """A byte-level BPE tokenizer with regex pre-tokenization and special tokens.

    Attributes (all plain Python containers, so you can print and inspect them):

    ``pattern: str``
        The pre-tokenization regex (for the ``regex`` module).
    ``merges: dict[tuple[int, int], int]``
        ``(left_id, right_id) -> new_id``. The dict's insertion order is the
        order in which the merges were learned, and a smaller ``new_id`` always
        means an earlier merge (for a trained tokenizer the ids are 256, 257, ...).
    ``vocab: dict[int, bytes]``
        ``id -> the bytes it stands for``, for every id the tokenizer can emit:
        the 256 single bytes, every merged token (the bytes of its left part
        followed by those of its right part) and every special token (its
        UTF-8 encoding).
    ``special_tokens: dict[str, int]``
        ``special string -> its id``.
    ``byte_ids: list[int]``
        ``byte_ids[b]`` is the id of the single byte ``b`` (0 <= b < 256).
        For a tokenizer you train this is simply ``b`` itself; GPT-4's
        vocabulary (see ``from_tiktoken_ranks``) numbers the single bytes in
        another order, which is why encoding goes through this table instead of
        assuming "id == byte value".

    A fresh ``Tokenizer()`` has no merges and no special tokens: it encodes a
    string to its raw UTF-8 bytes.
    """

    def __init__(self, pattern: str = GPT4_SPLIT_PATTERN):
        self.pattern: str = pattern
        self.merges: dict[tuple[int, int], int] = {}
        self.special_tokens: dict[str, int] = {}
        self.byte_ids: list[int] = list(range(256))
        self.vocab: dict[int, bytes] = self._build_vocab()

    def _build_vocab(self) -> dict[int, bytes]:
        """Rebuild ``id -> bytes`` from ``byte_ids``, ``merges`` and ``special_tokens``.

        Merges are replayed in order, so both parts of a merge are always
        already known when we reach it.
        """
        vocab = {idx: bytes([b]) for b, idx in enumerate(self.byte_ids)}
        for (left, right), idx in self.merges.items():
            vocab[idx] = vocab[left] + vocab[right]
        for special, idx in self.special_tokens.items():
            vocab[idx] = special.encode("utf-8")
        return vocab

    def __repr__(self) -> str:
        return (f"Tokenizer(vocab_size={len(self.vocab)}, merges={len(self.merges)}, "
                f"special_tokens={len(self.special_tokens)})")

    # ------------------------------------------------------------------ train

    def train(self, text: str, vocab_size: int,
              special_tokens: list[str] | tuple = ()) -> None:
        """Learn merges from ``text`` until the vocabulary has ``vocab_size`` ids.

        Any previous merges and special tokens are discarded first, and the
        single bytes get ids 0..255 (``byte_ids[b] == b``).

        **Sizes.** ``vocab_size`` counts everything: 256 byte tokens, plus the
        merges, plus the special tokens. So the number of merges to learn is
        ``vocab_size - 256 - len(special_tokens)``. If that is negative, raise
        ``ValueError``. Merge number ``k`` (from 0) gets id ``256 + k``; the
        special tokens get the ids right after the last merge, in the order
        given. Duplicate or empty special tokens are a ``ValueError`` too.

        **What is counted.**

        1. The text is cut around the special tokens (``split_on_special``).
           Special tokens are never merged, and text on the two sides of one is
           never merged together.
        2. Each ordinary piece is cut into pre-tokens with
           ``regex.findall(self.pattern, piece)``; each pre-token becomes the
           list of its UTF-8 bytes. Pairs are only counted *inside* a pre-token,
           so no merge ever crosses a pre-token boundary.
        3. A pair's count is the number of positions where it occurs, over all
           pre-tokens, overlaps included (``"aaa"`` counts ``(97, 97)`` twice).

        **Each step.** Take the pair with the highest count. **Tie-break:** if
        several pairs share the highest count, take the smallest one, comparing
        ``(left_id, right_id)`` as a tuple -- ``(32, 116)`` beats ``(101, 32)``,
        and ``(97, 98)`` beats ``(97, 99)``. Give it the next id, record it in
        ``self.merges`` and ``self.vocab``, and replace it in every pre-token
        with ``merge`` (left to right, no overlaps: ``"aaa"`` becomes
        ``[aa, a]``).

        **Stopping early.** If no pair occurs anymore (every pre-token is a
        single token), training stops with fewer merges than asked for; the
        special tokens then follow the last merge that was actually made, and
        ``len(self.vocab)`` is smaller than ``vocab_size``.

        **At the end** the tokenizer holds the result: ``self.merges`` (in
        merge order), ``self.special_tokens``, ``self.byte_ids =
        list(range(256))`` and ``self.vocab`` with every id (the given
        ``_build_vocab`` can compute it from the other three).

        **Speed.** Recounting every pair after every merge works, but is slow.
        Most pre-tokens repeat (think of ``" the"``), so count each distinct
        pre-token once, weighted by how often it occurs. After a merge only
        the pre-tokens that contained the merged pair change, so only their
        pairs need recounting. The reference does exactly this, and keeps the
        candidates in a heap to find the best pair quickly; it trains on the
        1 MB tinyshakespeare text to ``vocab_size=1024`` in about a second.
        Any method that gives the same merges is correct.
        """
        ### BEGIN SOLUTION
        # Hint: first validate the arguments and turn the text into
        #   `words` (a list of distinct pre-tokens, each a list of byte ids)
        #   and `freqs` (how often each occurs). Then loop: pick the best
        #   pair (highest count, then smallest pair), merge it everywhere,
        #   update the counts. A plain version that calls get_stats on every
        #   word after every merge is a fine place to start.
        #   Faster: keep `counts` up to date by subtracting the pairs of each
        #   word you change and adding its new pairs, remember which words
        #   contain each pair, and pop the best pair from a heap of
        #   (-count, pair) entries (skip entries whose count is out of date).
        special_tokens = list(special_tokens)
        for special in special_tokens:
            if not isinstance(special, str) or not special:
                raise ValueError(f"special tokens must be non-empty strings, got {special!r}")
        if len(set(special_tokens)) != len(special_tokens):
            raise ValueError(f"duplicate special tokens in {special_tokens!r}")
        num_merges = vocab_size - 256 - len(special_tokens)
        if num_merges < 0:
            raise ValueError(
                f"vocab_size={vocab_size} is too small: it must be at least 256 (one id per "
                f"byte) + {len(special_tokens)} (special tokens) = {256 + len(special_tokens)}")

        # Distinct pre-tokens and how often each one occurs.
        compiled = regex.compile(self.pattern)
        chunk_counts: Counter[str] = Counter()
        for piece in split_on_special(text, special_tokens)[0::2]:
            chunk_counts.update(compiled.findall(piece))
        words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
        freqs = list(chunk_counts.values())

        # counts[pair]: weighted number of occurrences; where[pair]: the words that
        # (may) contain it. `where` can hold stale entries -- merge() simply
        # leaves those words unchanged -- which is cheaper than keeping it exact.
        counts: dict[tuple[int, int], int] = {}
        where: defaultdict[tuple[int, int], set[int]] = defaultdict(set)
        for w, (word, freq) in enumerate(zip(words, freqs)):
            get_stats(word, counts, freq)
            for pair in zip(word, word[1:]):
                where[pair].add(w)

        # Max-heap through negated counts. Tuples compare element by element, so
        # among equal counts the smallest pair pops first: the tie-break for free.
        # Counts change, and we do not dig old entries out of the heap; we push a
        # fresh entry on every change and skip popped ones that are out of date.
        heap = [(-count, pair) for pair, count in counts.items()]
        heapq.heapify(heap)

        merges: dict[tuple[int, int], int] = {}
        vocab = {b: bytes([b]) for b in range(256)}
        while len(merges) < num_merges and heap:
            neg_count, pair = heapq.heappop(heap)
            if counts.get(pair) != -neg_count:
                continue  # stale entry: the pair's count changed after this was pushed
            new_id = 256 + len(merges)
            merges[pair] = new_id
            vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]

            delta: dict[tuple[int, int], int] = {}
            for w in where.pop(pair):
                word = words[w]
                new_word = merge(word, pair, new_id)
                if len(new_word) == len(word):
                    continue  # stale index entry, the pair is not in this word anymore
                get_stats(word, delta, -freqs[w])
                get_stats(new_word, delta, freqs[w])
                for p in zip(new_word, new_word[1:]):
                    where[p].add(w)
                words[w] = new_word
            for p, d in delta.items():
                if d:
                    count = counts[p] = counts.get(p, 0) + d
                    if count:
                        heapq.heappush(heap, (-count, p))
                    else:
                        del counts[p]  # the merged pair itself always ends here

        self.merges = merges
        self.byte_ids = list(range(256))
        first_special = 256 + len(merges)
        self.special_tokens = {s: first_special + k for k, s in enumerate(special_tokens)}
        self.vocab = vocab
        for special, idx in self.special_tokens.items():
            self.vocab[idx] = special.encode("utf-8")
        ### END SOLUTION

    # ----------------------------------------------------------------- encode

    def _encode_chunk(self, chunk: bytes) -> list[int]:
        """Encode one pre-token, given as bytes, into ids by replaying the merges.

        Start from the byte ids (``self.byte_ids[b]`` for each byte ``b``). Then
        repeat: among the adjacent pairs that appear in ``self.merges``, find
        the one with the lowest merge id (the one learned earliest) and replace
        all of its occurrences with ``merge``. Stop when no adjacent pair is in
        ``self.merges`` (or only one id is left).

        Why lowest merge id, not "most frequent"? Encoding must replay training:
        a merge can only apply once the merges it builds on have been applied,
        and earlier merges were exactly those.

        >>> Tokenizer()._encode_chunk(b"hi")   # no merges yet: raw bytes
        [104, 105]
        """
        ### BEGIN SOLUTION
        # Hint: min(pairs, key=lambda p: self.merges.get(p, float("inf")))
        #   finds the earliest merge; if it is not in self.merges, you are done.
        ids = [self.byte_ids[b] for b in chunk]
        merges = self.merges
        inf = float("inf")
        while len(ids) >= 2:
            pair = min(zip(ids, ids[1:]), key=lambda p: merges.get(p, inf))
            new_id = merges.get(pair)
            if new_id is None:
                break
            ids = merge(ids, pair, new_id)
        return ids
        ### END SOLUTION

    def encode(self, text: str) -> list[int]:
        """Turn a string into a list of token ids.

        1. Cut the text around the registered special tokens
           (``split_on_special(text, self.special_tokens)``). Every special token
           found is emitted as its single id -- they are all allowed.
        2. Cut each ordinary piece with ``regex.findall(self.pattern, piece)``.
        3. Encode each pre-token's UTF-8 bytes with ``_encode_chunk`` and append
           the ids, in order.

        Real text repeats the same pre-tokens a lot, so remembering the ids of
        pre-tokens already seen (a dict) speeds this up considerably.

        ``Tokenizer().encode("hé")`` gives ``[104, 195, 169]``: with no merges
        you get the raw UTF-8 bytes.
        """
        ### BEGIN SOLUTION
        # Hint: after split_on_special, even positions are text and odd
        #   positions are special tokens.
        compiled = regex.compile(self.pattern)
        cache: dict[str, list[int]] = {}
        ids: list[int] = []
        parts = split_on_special(text, self.special_tokens)
        for i, part in enumerate(parts):
            if i % 2 == 1:
                ids.append(self.special_tokens[part])
                continue
            for chunk in compiled.findall(part):
                chunk_ids = cache.get(chunk)
                if chunk_ids is None:
                    chunk_ids = cache[chunk] = self._encode_chunk(chunk.encode("utf-8"))
                ids.extend(chunk_ids)
        return ids
        ### END SOLUTION

    # ----------------------------------------------------------------- decode

    def decode(self, ids: list[int]) -> str:
        """Turn a list of token ids back into a string.

        Concatenate ``self.vocab[i]`` for every id, then decode the bytes with
        ``.decode("utf-8", errors="replace")``. A token can hold *part* of a
        multi-byte character (an emoji is 4 bytes and may be split over two
        tokens), so a list of ids need not be valid UTF-8 on its own;
        ``errors="replace"`` turns such leftovers into "\\ufffd" instead of
        raising. Decoding never fails because of UTF-8.

        It does fail on an id that is not in the vocabulary: raise
        ``ValueError`` with a message that names the id.

        For any string ``s``, ``decode(encode(s)) == s``.
        """
        ### BEGIN SOLUTION
        # Hint: b"".join(...) is the fast way to glue many bytes objects.
        chunks = []
        for idx in ids:
            token = self.vocab.get(idx)
            if token is None:
                raise ValueError(
                    f"unknown token id {idx!r}: ids must be in the vocabulary "
                    f"({len(self.vocab)} ids)")
            chunks.append(token)
        return b"".join(chunks).decode("utf-8", errors="replace")
        ### END SOLUTION

    # ------------------------------------------------------------ save / load

    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer to the single file ``path`` (JSON, UTF-8).

        Save everything needed to rebuild an identical tokenizer: the
        ``pattern``, the ``merges`` *in order* (as ``[left, right, new_id]``
        triples: JSON objects cannot have tuple keys), the ``special_tokens``
        and the ``byte_ids``. ``vocab`` need not be stored: ``_build_vocab``
        recomputes it. Put ``"format": FILE_FORMAT`` and
        ``"version": FILE_VERSION`` in the file so ``load`` can recognise it.
        """
        ### BEGIN SOLUTION
        # Hint: json.dump(data, f, ensure_ascii=False) with
        #   open(path, "w", encoding="utf-8") keeps non-ASCII text readable.
        data = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
            "byte_ids": self.byte_ids,
            "merges": [[left, right, idx] for (left, right), idx in self.merges.items()],
        }
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False)
        ### END SOLUTION

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        """Read a file written by ``save`` and return the tokenizer it describes.

        The result behaves exactly like the saved one: same ``pattern``,
        ``merges`` (same order), ``special_tokens``, ``byte_ids`` and ``vocab``.
        Raise ``ValueError`` if the file is not a tokenizer file of this format.
        """
        ### BEGIN SOLUTION
        # Hint: JSON gives lists back; turn each merge into a tuple key, and
        #   call _build_vocab at the end.
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
            raise ValueError(f"{os.fspath(path)!r} is not a {FILE_FORMAT} tokenizer file")
        if data.get("version") != FILE_VERSION:
            raise ValueError(f"unsupported {FILE_FORMAT} version {data.get('version')!r} "
                             f"(expected {FILE_VERSION})")
        tok = cls(data["pattern"])
        tok.byte_ids = [int(i) for i in data["byte_ids"]]
        tok.merges = {(int(left), int(right)): int(idx) for left, right, idx in data["merges"]}
        tok.special_tokens = {str(s): int(idx) for s, idx in data["special_tokens"].items()}
        tok.vocab = tok._build_vocab()
        return tok
        ### END SOLUTION


# ----------------------------------------------------------------------------
# GPT-4's tokenizer, rebuilt from tiktoken's tables


def recover_merges(mergeable_ranks: dict[bytes, int]) -> dict[tuple[int, int], int]:
    """Recover the merge list hidden in tiktoken's ``mergeable_ranks``.

    tiktoken does not store merges. It stores ``token bytes -> rank``, where
    the rank is also the token's id and a lower rank means "merged earlier".
    The pairs can be recovered: to find out how token ``t`` (rank ``r``, two
    bytes or more) was built, run BPE on ``t``'s own bytes, allowing only tokens
    of rank lower than ``r``:

    * start from the single bytes of ``t``;
    * repeatedly find the adjacent pair whose *concatenated bytes* have the
      lowest rank below ``r``, and join it (if the same lowest rank occurs
      more than once, join the leftmost occurrence);
    * stop when no adjacent concatenation has a rank below ``r``.

    This must end with exactly two parts ``(a, b)``, and then
    ``(ranks[a], ranks[b]) -> r`` is the merge that created ``t``. If it ends
    with any other number of parts, ``mergeable_ranks`` is not a BPE
    vocabulary: raise ``ValueError``. Single-byte tokens are not merges.

    Returns the merges ordered by rank (dict insertion order), like
    ``Tokenizer.merges``. Any consistent subset works too, e.g. only the
    tokens of rank < 5000, as long as the 256 single bytes are included.

    >>> ranks = {bytes([b]): b for b in range(256)}
    >>> ranks.update({b"ab": 256, b"abc": 257})
    >>> recover_merges(ranks)
    {(97, 98): 256, (256, 99): 257}
    """
    ### BEGIN SOLUTION
    # Hint: work with a list of bytes objects, `parts`. The rank of joining
    #   parts[i] and parts[i + 1] is mergeable_ranks.get(parts[i] + parts[i + 1]).
    #   Going through the tokens in rank order (sorted by rank) keeps the
    #   result in merge order.
    merges: dict[tuple[int, int], int] = {}
    get_rank = mergeable_ranks.get
    for token, rank in sorted(mergeable_ranks.items(), key=lambda item: item[1]):
        if len(token) < 2:
            continue
        parts = [token[i:i + 1] for i in range(len(token))]
        # Two parts left means we are done: joining them would give `token`
        # itself, whose rank is not below `rank`.
        while len(parts) > 2:
            best_rank, best_i = rank, -1
            for i in range(len(parts) - 1):
                r = get_rank(parts[i] + parts[i + 1])
                if r is not None and r < best_rank:  # strict: leftmost wins ties
                    best_rank, best_i = r, i
            if best_i < 0:
                break
            parts[best_i:best_i + 2] = [parts[best_i] + parts[best_i + 1]]
        if len(parts) != 2:
            raise ValueError(
                f"token {token!r} (rank {rank}) is not a merge of two lower-ranked tokens "
                f"(BPE on its bytes stops at {len(parts)} parts): not a BPE vocabulary")
        left, right = get_rank(parts[0]), get_rank(parts[1])
        if left is None or right is None:
            raise ValueError(f"token {token!r} (rank {rank}): a single byte is missing "
                             f"from mergeable_ranks")
        merges[(left, right)] = rank
    return merges
    ### END SOLUTION


def from_tiktoken_ranks(mergeable_ranks: dict[bytes, int],
                        special_tokens: dict[str, int] | None = None,
                        pattern: str = GPT4_SPLIT_PATTERN) -> Tokenizer:
    """Build a ``Tokenizer`` that encodes exactly like a tiktoken encoding.

    ``mergeable_ranks`` maps token bytes to rank (= id); ``special_tokens``
    maps special strings to their ids. For GPT-4::

        enc = tiktoken.get_encoding("cl100k_base")
        tok = from_tiktoken_ranks(enc._mergeable_ranks, enc._special_tokens)
        assert tok.encode(s) == enc.encode(s, allowed_special="all")

    GPT-4 gives the single bytes ids in a shuffled order, so ``byte_ids`` is
    read from the ranks, and the merges keep tiktoken's ids (``vocab[i]``
    is the same bytes as in tiktoken). All 256 single bytes must be present,
    otherwise ``ValueError``.
    """
    byte_ids = []
    for b in range(256):
        idx = mergeable_ranks.get(bytes([b]))
        if idx is None:
            raise ValueError(f"mergeable_ranks has no token for the single byte {b}")
        byte_ids.append(idx)
    tok = Tokenizer(pattern)
    tok.byte_ids = byte_ids
    tok.merges = recover_merges(mergeable_ranks)
    tok.special_tokens = dict(special_tokens or {})
    tok.vocab = tok._build_vocab()
    return tok


# ----------------------------------------------------------------------------
# A tiny demo: python bpe.py

DEMO_TEXT = """\
A tokenizer turns text into numbers. It starts from the bytes of the text, and
then it merges the most frequent pair of neighbouring tokens into a new token,
again and again. The merged tokens are the tokenizer's vocabulary: the more
often a piece of text occurs, the sooner it gets a token of its own. The word
"the" occurs often in English, so " the" soon becomes a single token; a rare
word such as "sesquipedalian" stays in pieces. Then there are emoji 🙂🙂 and
other scripts, 日本語のテキスト, which take several bytes per character.
<|endoftext|>That special token above separates two documents; it is never merged.
"""


def _demo() -> None:
    tok = Tokenizer()
    tok.train(DEMO_TEXT, vocab_size=300, special_tokens=["<|endoftext|>"])
    print(tok)
    print("first merges:")
    for (left, right), idx in list(tok.merges.items())[:8]:
        print(f"  {idx}: [{render_token(tok.vocab[left])}] + [{render_token(tok.vocab[right])}]"
              f" -> [{render_token(tok.vocab[idx])}]")
    sample = "the tokenizer merges the text 🙂<|endoftext|>日本語"
    ids = tok.encode(sample)
    print(f"encode({sample!r})")
    print(f"  -> {ids}")
    print(f"  = {[render_token(tok.vocab[i]) for i in ids]}")
    print(f"  {len(sample.encode('utf-8'))} bytes -> {len(ids)} tokens")
    back = tok.decode(ids)
    print(f"decode -> {back!r}  round trip ok: {back == sample}")


if __name__ == "__main__":
    try:
        _demo()
    except NotImplementedError as err:
        print(f"Not written yet: {err}")
        print("Fill in the functions that raise NotImplementedError, then run this again.")
