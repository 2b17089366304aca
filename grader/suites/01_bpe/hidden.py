"""Stage 01, hidden checks: the learner's merges and training speed against the reference."""
import torch

from grader import check
from grader.checks import CheckFailure, assert_speed_ratio, measure_ratio
from grader.checks.speed import cpu_clock
from grader.data import corpus

EOT = "<|endoftext|>"


@check("the merges equal the reference's, in order, on real text", points=3)
def merges_match_reference(impl, ref):
    # 30 KB and 600 ids: a correct trainer that recounts every pair before each merge needs well
    # under half of the check's time limit here.
    text = corpus("fables")[30000:60000] + corpus("multilingual")
    ours, theirs = impl.module("bpe").Tokenizer(), ref.module("bpe").Tokenizer()
    ours.train(text, 600, [EOT])
    theirs.train(text, 600, [EOT])
    got, expected = list(ours.merges.items()), list(theirs.merges.items())
    if got != expected:
        step = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
        vocab = theirs.vocab
        want = expected[step] if step < len(expected) else None
        raise CheckFailure(
            f"Merge {step} differs: yours is {got[step] if step < len(got) else 'missing'}, the reference's is {want}"
            + (f" ({vocab[want[0][0]]!r} + {vocab[want[0][1]]!r})" if want else "")
            + ". Check the pair counts after each merge, and the tie-break (smallest pair among equal counts)."
        )


@check("training is at most 4x slower than the reference (incremental pair counts)", points=3)
def training_speed(impl, ref):
    lines = corpus("fables").splitlines(keepends=True)
    ours, theirs = impl.module("bpe"), ref.module("bpe")

    def shuffled(gen):
        # Every run trains on the same lines in a new order, drawn from a secret seed: the same
        # work, on a text nobody has trained on before.
        return "".join(lines[i] for i in torch.randperm(len(lines), generator=gen).tolist())

    def train(bpe):
        def run(text):
            tokenizer = bpe.Tokenizer()
            tokenizer.train(text, 1024)
            return len(tokenizer.merges)  # read inside the timed run: training may not be put off until later

        return run

    def agree(got, expected):
        if got != expected:
            raise CheckFailure(f"While it was timed, training to vocab_size=1024 made {got!r} merges; it should make "
                               f"{expected}.")

    result = measure_ratio(train(ours), train(theirs), repeats=3, inputs=shuffled, agree=agree,
                           clocks=(cpu_clock(impl), cpu_clock(ref)))
    assert_speed_ratio(
        result, 4.0, "Training on 200 KB of text to vocab_size=1024",
        hint="Count each distinct pre-token once, weighted by its frequency, and after a merge update only the "
        "counts of the words that contained the merged pair, instead of recounting everything.",
    )
