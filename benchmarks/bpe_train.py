"""Benchmark BPE training: the stage-01 reference vs the naive trainer vs HuggingFace.

    python benchmarks/bpe_train.py [--dataset NAME | --text PATH] [--vocab-size 1024] [--repeats 3]
                                   [--naive-vocab-size N] [--naive-chars N]
                                   [--out benchmarks/bpe_train.md]

Three trainers learn a byte-level BPE vocabulary of the same size from the same
text, with the same GPT-4 pre-tokenization. The text is one of the course's datasets
(default tinyshakespeare: `python -m grader data fetch tinyshakespeare` first), or any
UTF-8 file given with --text:

* ``reference``: ``Tokenizer.train`` from ``solutions/01_bpe/bpe.py``
  (distinct pre-tokens weighted by count, incremental pair counts, a heap);
* ``naive``: ``benchmarks/naive_bpe.py``, which recounts every pair before
  every merge (it can be restricted with ``--naive-vocab-size`` / ``--naive-chars``
  when it is too slow; the table then says so);
* ``hf-tokenizers``: HuggingFace ``tokenizers`` (Rust) ``BpeTrainer`` with a
  ``Split`` on the same regex followed by ``ByteLevel``.

The repeats are interleaved (reference, naive, hf, reference, naive, hf, ...) so
that a slow phase of the machine hits all trainers alike; the median wall time
of each is reported. The script also checks that the naive trainer learned
exactly the reference's merges whenever it ran with the same settings.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.util
import os
import platform
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_DATASET = "tinyshakespeare"


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bpe = _load("reference_bpe", REPO / "solutions" / "01_bpe" / "bpe.py")
naive_bpe = _load("naive_bpe", HERE / "naive_bpe.py")


def train_reference(text: str, vocab_size: int) -> dict:
    tok = bpe.Tokenizer()
    tok.train(text, vocab_size)
    return tok.merges


def train_hf(text: str, vocab_size: int) -> int:
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers

    # Oniguruma reads "{1,3}+" as "one or more groups of 1-3" (Ruby syntax), not as a
    # possessive {1,3}. Possessive or not makes no difference at the end of that
    # alternative, so the plain "{1,3}" gives exactly the same pre-tokens (checked below).
    pattern = bpe.GPT4_SPLIT_PATTERN.replace("{1,3}+", "{1,3}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=vocab_size,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    # One string, so that the pre-tokens are exactly those of the other two trainers
    # (feeding lines would cut "\n\n" in two).
    tok.train_from_iterator([text], trainer)
    return tok.get_vocab_size()


def hf_pretokens_match(text: str) -> bool:
    import regex
    from tokenizers import Regex, pre_tokenizers

    split = pre_tokenizers.Split(Regex(bpe.GPT4_SPLIT_PATTERN.replace("{1,3}+", "{1,3}")),
                                 behavior="isolated")
    theirs = [piece for piece, _ in split.pre_tokenize_str(text)]
    return theirs == regex.findall(bpe.GPT4_SPLIT_PATTERN, text)


def machine_info() -> list[str]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = []
    for name in ("regex", "tokenizers"):
        try:
            versions.append(f"{name} {importlib.import_module(name).__version__}")
        except Exception:  # noqa: BLE001 -- a missing library is reported, not fatal
            versions.append(f"{name} (not installed)")
    return [
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- platform: {platform.platform()}",
        f"- cpu: {cpu}, os.cpu_count() = {os.cpu_count()}",
        f"- python: {platform.python_implementation()} {platform.python_version()}",
        f"- libraries: {', '.join(versions)}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--dataset", default=DEFAULT_DATASET,
                        help=f"one of the course's datasets (default {DEFAULT_DATASET}; see `python -m grader data list`)")
    source.add_argument("--text", type=Path, help="a UTF-8 text file to train on instead")
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--naive-vocab-size", type=int, default=None,
                        help="train the naive trainer to this size instead (it is slow)")
    parser.add_argument("--naive-chars", type=int, default=None,
                        help="train the naive trainer on only the first N characters")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--skip-hf", action="store_true")
    parser.add_argument("--out", default=None, help="also write the report to this markdown file")
    args = parser.parse_args(argv)

    if args.text is not None:
        text, text_name = args.text.read_text(encoding="utf-8"), f"`{args.text.name}`"
    else:
        sys.path.insert(0, str(REPO))  # this checkout's grader, whichever folder the script runs from
        from grader import data
        from grader.course import CourseError

        try:
            text, text_name = data.corpus(args.dataset), f"the `{args.dataset}` dataset"
        except CourseError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    naive_vocab = args.naive_vocab_size or args.vocab_size
    naive_text = text[: args.naive_chars] if args.naive_chars else text
    naive_same_setup = naive_vocab == args.vocab_size and len(naive_text) == len(text)

    have_hf = not args.skip_hf
    if have_hf:
        try:
            import tokenizers  # noqa: F401
        except ImportError:
            print("tokenizers is not installed: skipping the HuggingFace row", file=sys.stderr)
            have_hf = False

    runs = [("reference", lambda: train_reference(text, args.vocab_size))]
    if not args.skip_naive:
        runs.append(("naive", lambda: naive_bpe.train_naive(naive_text, naive_vocab)))
    if have_hf:
        runs.append(("hf-tokenizers", lambda: train_hf(text, args.vocab_size)))

    times: dict[str, list[float]] = {name: [] for name, _ in runs}
    results: dict[str, object] = {}
    for r in range(args.repeats):
        for name, fn in runs:
            gc.collect()
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
            print(f"repeat {r + 1}/{args.repeats}  {name:14s} {times[name][-1]:8.3f} s",
                  file=sys.stderr, flush=True)

    ref_merges = results["reference"]
    ref_median = statistics.median(times["reference"])
    n_chars = f"{len(text):,} chars"
    rows = [("reference", n_chars, args.vocab_size, f"{len(ref_merges)} merges")]
    if "naive" in results:
        if naive_same_setup:
            same = "same merges as reference: " + ("yes" if list(results["naive"].items())
                                                   == list(ref_merges.items()) else "**NO**")
        else:
            same = (f"**restricted run** ({len(naive_text):,} chars, vocab {naive_vocab}); "
                    f"merges not compared")
        rows.append(("naive", f"{len(naive_text):,} chars", naive_vocab, same))
    if "hf-tokenizers" in results:
        note = (f"vocab {results['hf-tokenizers']}; pre-tokens identical: "
                f"{'yes' if hf_pretokens_match(text) else '**NO**'}; "
                f"own tie-break, so merges may differ")
        rows.append(("hf-tokenizers", n_chars, args.vocab_size, note))

    lines = [
        f"Training a byte-level BPE tokenizer on {text_name} "
        f"({len(text):,} characters) to `vocab_size={args.vocab_size}` with the GPT-4 "
        f"pre-tokenization regex. `reference` is `Tokenizer.train` from "
        f"`solutions/01_bpe/bpe.py` (pure Python: distinct pre-tokens weighted by their count, "
        f"pair counts updated incrementally after each merge, best pair from a heap); `naive` is "
        f"`benchmarks/naive_bpe.py` (pure Python, recounts every pair over the distinct "
        f"pre-tokens before every merge); `hf-tokenizers` is HuggingFace `tokenizers` "
        f"(Rust) `BpeTrainer` with a `Split` on the same regex plus `ByteLevel`, given the text "
        f"as one string. Each trainer ran {args.repeats} times, interleaved, and the table "
        f"shows the median wall time and its ratio to the reference's median. These are "
        f"numbers from one run on one {os.cpu_count()}-core machine (details below), so read "
        f"the ratios as orders of magnitude, not as precise speedups.",
        "",
        "| trainer | text | vocab size | median s | runs (s) | ratio to reference | notes |",
        "|---|---|---:|---:|---|---:|---|",
    ]
    for name, text_desc, vocab, note in rows:
        med = statistics.median(times[name])
        runs_s = ", ".join(f"{t:.2f}" for t in times[name])
        lines.append(f"| {name} | {text_desc} | {vocab} | {med:.3f} | {runs_s} | "
                     f"{med / ref_median:.2f}x | {note} |")
    lines += ["", "Machine:", ""] + machine_info()
    cli = sys.argv[1:] if argv is None else argv
    command = " ".join(["python benchmarks/bpe_train.py", *cli])
    lines += ["", f"Command: `{command}`"]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        Path(args.out).write_text("# BPE training benchmark\n\n" + report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
