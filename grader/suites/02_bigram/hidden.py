"""Stage 02, hidden checks: the learner's numbers against the reference's on the same inputs."""
import torch
from hypothesis import given
from hypothesis import strategies as st

from grader import check
from grader.checks import CheckFailure, assert_close
from grader.data import corpus


@check("logits and loss equal the reference's with the same weights", points=2)
@given(vocab_size=st.integers(2, 30), batch=st.integers(1, 3), time=st.integers(1, 8))
def logits_match_reference(impl, ref, vocab_size, batch, time):
    ours, theirs = impl.module("bigram").BigramLanguageModel(vocab_size), ref.module("bigram").BigramLanguageModel(vocab_size)
    weights = theirs.state_dict()
    ours.load_state_dict(weights)
    idx, targets = torch.randint(0, vocab_size, (batch, time)), torch.randint(0, vocab_size, (batch, time))
    logits, loss = ours(idx, targets)
    ref_logits, ref_loss = theirs(idx, targets)
    assert_close(logits, ref_logits, "logits", hint="Row idx[b, t] of the table is the logits at (b, t).")
    assert_close(loss, ref_loss, "loss", rtol=1e-5, atol=1e-6)


@check("the count model on real text equals the reference's", points=2)
def count_model_matches_reference(impl, ref):
    text = corpus("fables")[:50000]
    ours, theirs = impl.module("bigram"), ref.module("bigram")
    chars = theirs.build_vocab(text)
    ids = torch.tensor(theirs.encode(text, chars))
    probs = ours.bigram_probs(ours.bigram_counts(ids, len(chars)), 0.5)
    ref_probs = theirs.bigram_probs(theirs.bigram_counts(ids, len(chars)), 0.5)
    assert_close(probs, ref_probs, "bigram_probs(bigram_counts(text))", rtol=1e-5, atol=1e-7)
    nll, ref_nll = ours.average_nll(ref_probs, ids), theirs.average_nll(ref_probs, ids)
    if not isinstance(nll, float) or abs(nll - ref_nll) > 1e-4:
        raise CheckFailure(f"average_nll on the text is {nll!r}, expected {ref_nll:.6f}.")


@check("bigram_counts, bigram_probs and average_nll equal the reference's on drawn inputs", points=1)
@given(vocab_size=st.integers(1, 12), length=st.integers(2, 60), smoothing=st.sampled_from([0.5, 1.0, 3.0]),
       seed=st.integers(0, 1000))
def count_functions_match_reference_on_drawn_inputs(impl, ref, vocab_size, length, smoothing, seed):
    ours, theirs = impl.module("bigram"), ref.module("bigram")
    ids = torch.randint(0, vocab_size, (length,), generator=torch.Generator().manual_seed(seed))
    counts = theirs.bigram_counts(ids, vocab_size)
    assert_close(ours.bigram_counts(ids, vocab_size), counts, f"bigram_counts(ids of length {length}, {vocab_size})")
    probs = theirs.bigram_probs(counts, smoothing)
    assert_close(ours.bigram_probs(counts, smoothing), probs, f"bigram_probs(counts, smoothing={smoothing})")
    got, expected = ours.average_nll(probs, ids), theirs.average_nll(probs, ids)
    if type(got) is not float or abs(got - expected) > 1e-5 * max(1.0, abs(expected)):
        raise CheckFailure(f"average_nll(probs, ids) returned {got!r}, the reference {expected!r}.")
