"""Stage 02, public checks: the count model, the embedding model, its loss and generation."""
import math
from collections import Counter

import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from grader import check
from grader.checks import (
    CheckFailure,
    assert_close,
    assert_follows_device_and_dtype,
    assert_init_loss,
    assert_inputs_unchanged,
    expect_int_list,
    cause,
    expect_tensor,
    expect_type,
    likely_bug,
)
from grader.data import corpus
from grader.probes import set_parameter, train_steps

TABLE = "token_embedding_table.weight"


def token_ids(max_vocab: int = 12, max_len: int = 60):
    """(vocab_size, ids) with every id in range; includes sequences too short to have a pair."""
    return st.integers(1, max_vocab).flatmap(
        lambda v: st.tuples(st.just(v), st.lists(st.integers(0, v - 1), min_size=1, max_size=max_len))
    )


@check("build_vocab, encode and decode round-trip the text", points=1)
@given(text=st.text(max_size=40))
def vocab_round_trip(impl, text):
    bigram = impl.module("bigram")
    chars = bigram.build_vocab(text)
    expect_type(chars, list, "build_vocab(text)")
    if chars != sorted(set(text)):
        raise CheckFailure(f"build_vocab({text!r}) returned {chars!r}; expected the sorted distinct characters {sorted(set(text))!r}.")
    ids = expect_int_list(bigram.encode(text, chars), "encode(text, chars)")
    back = bigram.decode(ids, chars)
    if back != text:
        raise CheckFailure(f"decode(encode(text)) gave {back!r} for text {text!r}.")


@check("bigram_counts counts each (current, next) pair", points=3)
@given(case=token_ids())
def counts_match(impl, case):
    vocab_size, ids = case
    counts = impl.module("bigram").bigram_counts(torch.tensor(ids), vocab_size)
    expect_tensor(counts, "bigram_counts(ids, V)", (vocab_size, vocab_size), torch.int64)
    expected = torch.zeros(vocab_size, vocab_size, dtype=torch.int64)
    for (a, b), n in Counter(zip(ids, ids[1:])).items():
        expected[a, b] = n
    if torch.equal(counts, expected):
        return
    wrapped = expected.clone()
    wrapped[ids[-1], ids[0]] += 1
    hint = "Each pair (ids[t], ids[t + 1]) adds one to counts[ids[t], ids[t + 1]]."
    if torch.equal(counts, expected.T):
        hint = "Your table is transposed: rows must be the current token and columns the next one."
    elif torch.equal(counts, wrapped):
        hint = ("You also count the pair (last id, first id), as torch.roll does: the last token has no next one. "
                "Pair ids[:-1] with ids[1:]: N ids hold N - 1 pairs of neighbours.")
    elif counts.sum() != expected.sum():
        hint = f"There are {len(ids) - 1} pairs of neighbours in {len(ids)} ids, but your counts add up to {int(counts.sum())}."
    a, b = (counts != expected).nonzero()[0].tolist()
    raise CheckFailure(f"counts[{a}, {b}] is {int(counts[a, b])}, expected {int(expected[a, b])} for ids {ids}.\n"
                       f"{cause(hint)}")


@check("bigram_probs smooths and normalizes each row", points=2)
@given(case=token_ids(), smoothing=st.sampled_from([0.1, 1.0, 3.0]))
def probs_are_smoothed_rows(impl, case, smoothing):
    vocab_size, ids = case
    counts = torch.zeros(vocab_size, vocab_size, dtype=torch.int64)
    for a, b in zip(ids, ids[1:]):
        counts[a, b] += 1
    probs = impl.module("bigram").bigram_probs(counts, smoothing)
    expect_tensor(probs, "bigram_probs(counts)", (vocab_size, vocab_size), torch.float32)
    smoothed = counts.double() + smoothing
    expected = (smoothed / smoothed.sum(1, keepdim=True)).float()
    if torch.allclose(probs, expected, 1e-5, 1e-6) and torch.allclose(probs.sum(1), torch.ones(vocab_size), 1e-5, 1e-5):
        return
    hint = smoothing_problem(probs, counts, smoothing, expected)
    assert_close(
        probs.sum(dim=1), torch.ones(vocab_size), "the row sums of bigram_probs", rtol=1e-5, atol=1e-5,
        hint=hint or cause("Each row is a distribution over the next token: divide each row by its own sum (dim=1, "
                           "keepdim=True)."),
    )
    assert_close(probs, expected, "bigram_probs", rtol=1e-5, atol=1e-6,
                 hint=hint or cause(f"Add the smoothing ({smoothing}) to every count before normalizing."))


def smoothing_problem(probs: torch.Tensor, counts: torch.Tensor, smoothing: float, expected: torch.Tensor) -> str:
    """The known bug that `probs` = bigram_probs(counts, smoothing) shows, as a diagnosis ('' when none)."""
    smoothed = counts.float() + smoothing
    seen = counts.sum(1) > 0  # rows that can be normalized without smoothing
    unsmoothed = counts.float() / counts.float().sum(1, keepdim=True).clamp(min=1)
    if (smoothing != 1.0 and torch.allclose(probs, (counts.float() + 1) / (counts.float() + 1).sum(1, keepdim=True),
                                            1e-5, 1e-6)):
        return cause(f"You add 1 to every count whatever the smoothing argument says: add smoothing ({smoothing}).")
    if seen.any() and not torch.allclose(probs, expected, 1e-5, 1e-6) and torch.allclose(
            probs[seen], unsmoothed[seen], 1e-5, 1e-6):
        return cause(f"You forgot the smoothing: add it ({smoothing}) to every count before normalizing, so that no "
                     "pair gets probability 0.")
    return likely_bug(probs, expected, (
        ("You normalize each column (dim=0): each row is the distribution of the token that follows, so divide each "
         "row by its own sum, smoothed.sum(dim=1, keepdim=True).", smoothed / smoothed.sum(0, keepdim=True)),
        ("You add the smoothing after normalizing: add it to every count first, then divide each row by its own "
         "sum.", counts.float() / counts.float().sum(1, keepdim=True).clamp(min=1) + smoothing),
    ), "")


@check("average_nll is the mean negative log-probability of each next token", points=2)
@given(case=token_ids().filter(lambda c: len(c[1]) > 1), seed=st.integers(0, 100))
def average_nll_matches(impl, case, seed):
    vocab_size, ids = case
    probs = torch.rand(vocab_size, vocab_size, generator=torch.Generator().manual_seed(seed)) + 0.05
    probs = probs / probs.sum(1, keepdim=True)
    got = impl.module("bigram").average_nll(probs, torch.tensor(ids))
    if isinstance(got, torch.Tensor):
        raise CheckFailure(f"average_nll(probs, ids) should be a float, but it is a Tensor: {got!r}.\n"
                           + cause("Return a Python float: call .item() on the 0-dim tensor of the mean."))
    expect_type(got, float, "average_nll(probs, ids)")
    expected = -sum(math.log(probs[a, b].item()) for a, b in zip(ids, ids[1:])) / (len(ids) - 1)

    def close(value: float) -> bool:
        return abs(got - value) <= 1e-4 * max(1.0, abs(value))

    if close(expected):
        return
    logs = [math.log(probs[a, b].item()) for a, b in zip(ids, ids[1:])]
    variants = (
        ("You look up probs[next, current]: row = current, column = next, probs[ids[t], ids[t + 1]].",
         -sum(math.log(probs[b, a].item()) for a, b in zip(ids, ids[1:])) / len(logs)),
        ("You return the mean log-probability without the minus sign: the NLL is -log p, a positive number.",
         sum(logs) / len(logs)),
        ("You sum over the pairs instead of averaging: divide by their number, len(ids) - 1.", -sum(logs)),
        (f"You divide by len(ids) = {len(ids)}; there are len(ids) - 1 = {len(logs)} pairs of neighbours.",
         -sum(logs) / len(ids)),
    )
    found = next((cause(hint) for hint, value in variants if close(value)), "Average -log probs[ids[t], ids[t + 1]] "
                 "over the pairs of neighbours: row = current, column = next.")
    raise CheckFailure(f"average_nll returned {got:.6f}, expected {expected:.6f} for ids {ids}.\n{found}")


@check("forward returns (B, T, V) logits, and no loss without targets", points=2)
@given(vocab_size=st.integers(1, 20), batch=st.integers(1, 4), time=st.integers(1, 9))
def forward_shapes(impl, vocab_size, batch, time):
    model = impl.module("bigram").BigramLanguageModel(vocab_size)
    idx = torch.randint(0, vocab_size, (batch, time))
    logits, loss = model(idx)
    expect_tensor(logits, "logits", (batch, time, vocab_size), torch.float32)
    if loss is not None:
        raise CheckFailure(f"forward(idx) without targets should return loss None, got {loss!r}.")
    logits, loss = model(idx, torch.randint(0, vocab_size, (batch, time)))
    expect_tensor(logits, "logits (with targets)")
    if logits.shape == (batch * time, vocab_size) and logits.shape != (batch, time, vocab_size):
        raise CheckFailure(f"logits (with targets) has shape {tuple(logits.shape)}, expected "
                           f"{(batch, time, vocab_size)}.\n" + cause(
                               "You return the flattened (B*T, V) logits. Flatten only for the loss: return the "
                               "logits as (B, T, V)."))
    expect_tensor(logits, "logits (with targets)", (batch, time, vocab_size), torch.float32)
    expect_tensor(loss, "loss", (), torch.float32)


@check("the loss is the cross-entropy of the logits over all B*T positions", points=2)
@given(vocab_size=st.integers(2, 20), batch=st.integers(1, 4), time=st.integers(1, 9))
def loss_is_cross_entropy(impl, vocab_size, batch, time):
    model = impl.module("bigram").BigramLanguageModel(vocab_size)
    idx = torch.randint(0, vocab_size, (batch, time))
    targets = torch.randint(0, vocab_size, (batch, time))
    logits, loss = model(idx, targets)
    expect_tensor(logits, "logits", (batch, time, vocab_size), torch.float32)
    expected = F.cross_entropy(logits.view(-1, vocab_size), targets.view(-1))
    expect_tensor(loss, "loss", (), torch.float32)
    if torch.isclose(loss, expected, rtol=1e-4, atol=1e-5):
        return
    flat = logits.detach().view(-1, vocab_size)
    hint = "Flatten the logits to (B*T, V) and the targets to (B*T,) and take the mean cross-entropy."
    if batch * time > 1 and torch.isclose(loss, expected * batch * time, rtol=1e-4):
        hint = cause("Your loss is the sum over positions; use the mean (F.cross_entropy's default reduction).")
    elif not torch.equal(idx, targets) and torch.isclose(loss, F.cross_entropy(flat, idx.view(-1)), rtol=1e-4):
        hint = cause("Your loss compares the logits with the input tokens; compare them with the targets (the next "
                     "tokens).")
    elif torch.isclose(loss, F.cross_entropy(F.softmax(flat, dim=-1), targets.view(-1)), rtol=1e-4):
        hint = cause("You apply softmax before F.cross_entropy: it takes the raw logits and applies log-softmax "
                     "itself.")
    assert_close(loss, expected, "loss", rtol=1e-4, atol=1e-5, hint=hint)


@check("the loss at initialization is about ln(vocab_size)", points=1)
def init_loss(impl):
    vocab_size = 65
    model = impl.module("bigram").BigramLanguageModel(vocab_size)
    idx = torch.randint(0, vocab_size, (16, 32))
    _, loss = model(idx, torch.randint(0, vocab_size, (16, 32)))
    expect_tensor(loss, "loss", (), torch.float32)
    assert_init_loss(
        loss.item(), vocab_size, tolerance=1.0,
        hint="A much larger loss means the initial logits are far too large: keep nn.Embedding's default init.",
    )


@check("generate appends max_new_tokens valid tokens to each row", points=2)
@given(vocab_size=st.integers(1, 12), batch=st.integers(1, 3), time=st.integers(1, 5), new=st.integers(0, 6))
def generate_shape(impl, vocab_size, batch, time, new):
    model = impl.module("bigram").BigramLanguageModel(vocab_size)
    idx = torch.randint(0, vocab_size, (batch, time))
    out = model.generate(idx, new)
    expect_tensor(out, "generate(idx, max_new_tokens)")
    if out.shape == (batch, new) and out.shape != (batch, time + new):
        raise CheckFailure(
            f"generate(idx, max_new_tokens) has shape {tuple(out.shape)}, expected {(batch, time + new)}.\n"
            + cause("You return only the new tokens: return idx with them appended, "
                    "torch.cat([idx, next_token], dim=1) at each step."))
    expect_tensor(out, "generate(idx, max_new_tokens)", (batch, time + new), torch.int64)
    if not torch.equal(out[:, :time], idx):
        raise CheckFailure("generate changed the tokens it was given: the first T columns must be idx itself.")
    if out.numel() and (out.min() < 0 or out.max() >= vocab_size):
        raise CheckFailure(f"generate produced token {int(out.max())}, outside [0, {vocab_size}).")


@check("generate samples the next token from the last position", points=2)
def generate_follows_last_token(impl):
    vocab_size = 7
    model = impl.module("bigram").BigramLanguageModel(vocab_size)
    # Row a puts (almost) all probability on a + 1: sampling must walk 3, 4, 5, ...
    table = torch.full((vocab_size, vocab_size), -30.0)
    table[torch.arange(vocab_size), (torch.arange(vocab_size) + 1) % vocab_size] = 30.0
    impl.probe(set_parameter, model, TABLE, table)
    idx = torch.tensor([[0, 5, 2], [6, 1, 3]])
    out = model.generate(idx, 6)
    expect_tensor(out, "generate(idx, 6)", (2, 9), torch.int64)
    expected = idx.clone()
    for _ in range(6):
        expected = torch.cat([expected, (expected[:, -1:] + 1) % vocab_size], dim=1)
    if not torch.equal(out, expected):
        first = torch.cat([idx, ((idx[:, :1] + 1) % vocab_size).expand(-1, 6)], dim=1)
        found = ("You sample from the first position's logits: use the logits at the last position only "
                 "(logits[:, -1, :]), the token the next one follows." if torch.equal(out, first) else
                 "The tokens you sample do not follow the table: take the softmax of the newest logits, "
                 "logits[:, -1, :], over the vocabulary (dim=-1), not over the batch (dim=0).")
        raise CheckFailure(
            f"With a table where token a is always followed by a + 1, generate({idx.tolist()}, 6) gave {out.tolist()}, "
            f"expected {expected.tolist()}.\n{cause(found)}"
        )


@check("generate samples rather than always picking the most likely token", points=1)
def generate_samples(impl):
    vocab_size = 8
    model = impl.module("bigram").BigramLanguageModel(vocab_size)
    table = torch.zeros(vocab_size, vocab_size)
    table[:, 0] = 0.5  # token 0 is the most likely next token, but only slightly
    impl.probe(set_parameter, model, TABLE, table)
    out = model.generate(torch.zeros(1, 1, dtype=torch.long), 400)
    expect_tensor(out, "generate(idx, 400)", (1, 401), torch.int64)
    share_of_zero = (out[0, 1:] == 0).float().mean().item()
    if len(set(out[0, 1:].tolist())) < vocab_size - 1 or share_of_zero > 0.4:
        greedy = "You always pick the most likely token (argmax). " if share_of_zero == 1.0 else ""
        raise CheckFailure(
            f"From nearly uniform probabilities, 400 generated tokens used only {len(set(out[0].tolist()))} distinct "
            f"tokens and the most likely one {share_of_zero:.0%} of the time (expected about 20%).\n"
            + cause(f"{greedy}Sample with torch.multinomial(probs, num_samples=1) instead of taking the argmax.")
        )


@check("training the embedding model reaches the count model's loss", points=2)
def training_matches_counts(impl):
    bigram = impl.module("bigram")
    text = corpus("fables")[:5000]
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    ids = torch.tensor([stoi[c] for c in text])
    vocab_size = len(chars)
    counts = torch.zeros(vocab_size, vocab_size, dtype=torch.float64)
    counts.index_put_((ids[:-1], ids[1:]), torch.ones(len(ids) - 1, dtype=torch.float64), accumulate=True)
    probs = (counts + 0.01) / (counts + 0.01).sum(1, keepdim=True)
    count_nll = -probs[ids[:-1], ids[1:]].log().mean().item()

    model = bigram.BigramLanguageModel(vocab_size)
    x, y = ids[:-1].view(1, -1), ids[1:].view(1, -1)

    def loss_now() -> float:
        # The grader's own cross-entropy on the logits the model returns: the training helper runs
        # beside the learner's code, so the losses it reports count for nothing.
        logits = model(x)[0]
        expect_tensor(logits, "model(idx)[0], the logits", (1, len(ids) - 1, vocab_size), torch.float32)
        return F.cross_entropy(logits.detach().view(-1, vocab_size), y.view(-1)).item()

    start = loss_now()
    impl.probe(train_steps, model, x, y, steps=200, lr=0.1)
    final = loss_now()
    if not math.isfinite(final) or final > count_nll + 0.05:
        found = ("Training did not change the model at all: no gradient reaches the table (a .detach(), "
                 "torch.no_grad() or a copy of the weights in forward?). The loss must be computed from the table's "
                 "own output so that gradients reach the table." if abs(final - start) < 1e-6 else
                 "Check that the loss compares each position's logits with the NEXT token (the targets), and that "
                 "gradients reach the table.")
        raise CheckFailure(
            f"After 200 AdamW steps on 5,000 characters the loss is {final:.4f} (it started at {start:.4f}); "
            f"the count model scores {count_nll:.4f} on the same text, and training should come within 0.05 of it.\n"
            + cause(found)
        )


# --- general properties (grader/checks/properties.py) -----------------------------------------


@check("bigram_counts, bigram_probs, average_nll and forward leave their inputs unchanged", points=1)
def inputs_unchanged(impl):
    bigram = impl.module("bigram")
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 6, (40,), generator=gen)
    counts = assert_inputs_unchanged(impl, bigram.bigram_counts, ids, 6, what="bigram_counts(ids, 6)", names=("ids",))
    probs = assert_inputs_unchanged(impl, bigram.bigram_probs, counts, what="bigram_probs(counts)", names=("counts",))
    assert_inputs_unchanged(impl, bigram.average_nll, probs, ids, what="average_nll(probs, ids)",
                            names=("probs", "ids"))
    model = bigram.BigramLanguageModel(6)
    idx, targets = torch.randint(0, 6, (2, 5), generator=gen), torch.randint(0, 6, (2, 5), generator=gen)
    assert_inputs_unchanged(impl, model, idx, targets, what="model(idx, targets)", names=("idx", "targets"))


@check("forward follows the model's device and dtype (meta, float64)", points=1)
def follows_device_and_dtype(impl):
    model = impl.module("bigram").BigramLanguageModel(6)
    idx = torch.randint(0, 6, (2, 5), generator=torch.Generator().manual_seed(1))
    assert_follows_device_and_dtype(impl, model, idx, idx, what="model(idx, targets)")


@check("the loss stays finite and correct for large logits (weights times 10 and 100)", points=1)
def loss_stable_for_large_logits(impl):
    vocab_size = 9
    model = impl.module("bigram").BigramLanguageModel(vocab_size)
    gen = torch.Generator().manual_seed(2)
    table = torch.randn(vocab_size, vocab_size, generator=gen)
    idx, targets = torch.randint(0, vocab_size, (3, 6), generator=gen), torch.randint(0, vocab_size, (3, 6), generator=gen)
    for scale in (10, 100):
        impl.probe(set_parameter, model, TABLE, table * scale)
        _, loss = model(idx, targets)
        expected = F.cross_entropy((table * scale)[idx].view(-1, vocab_size), targets.view(-1))
        expect_tensor(loss, "loss", (), torch.float32)
        assert_close(
            loss, expected, f"the loss with logits up to {(table * scale).abs().max().item():.0f}", rtol=1e-4,
            atol=1e-4, hint=cause("exp() of large logits overflows to inf: use F.cross_entropy, which works with "
                                  "log-softmax (it subtracts each row's max first), rather than softmax, then log."),
        )


@check("generate draws new samples on every call (no fixed seed inside)", points=1)
def generate_draws_anew(impl):
    model = impl.module("bigram").BigramLanguageModel(8)
    impl.probe(set_parameter, model, TABLE, torch.zeros(8, 8))  # uniform: 30 draws of 8 tokens
    first = model.generate(torch.zeros(1, 1, dtype=torch.long), 30)
    second = model.generate(torch.zeros(1, 1, dtype=torch.long), 30)
    expect_tensor(first, "generate(idx, 30)", (1, 31), torch.int64)
    if torch.equal(first, second):
        raise CheckFailure(
            "Two calls of generate from the same prompt gave the same 30 tokens.\n" + cause(
                "Your generate seeds the random numbers itself (torch.manual_seed inside generate?). Leave seeding "
                "to the caller; torch.multinomial draws from PyTorch's global random numbers, which move on after "
                "each call.")
        )
