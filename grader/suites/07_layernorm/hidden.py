"""Stage 07, hidden checks: the learner's GPT against the reference's, with the same weights."""
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from grader import check
from grader.checks import CheckFailure, assert_same_language_model, expect_tensor, share_weights
from grader.strategies import GPT_EDGE_SIZES, gpt_sizes, split_sizes


def twins(impl, ref, config):
    """The learner's GPT and the reference's, in eval mode, holding the reference's weights."""
    ours = impl.module("gpt").GPT(impl.module("gpt").GPTConfig(**config))
    theirs = ref.module("gpt").GPT(ref.module("gpt").GPTConfig(**config))
    share_weights(ours, theirs, "Your GPT", "Use GPT-2's names.")
    return ours, theirs


@check("logits and loss equal the reference's with the same weights", points=3)
@settings(max_examples=8)
@given(sizes=gpt_sizes(max_layers=3), seed=st.integers(0, 1000))
@example(sizes=GPT_EDGE_SIZES, seed=0)
def logits_match_reference(impl, ref, sizes, seed):
    config, batch, T = split_sizes(sizes)
    ours, theirs = twins(impl, ref, config)
    assert_same_language_model(ours, theirs, config["vocab_size"], batch, T, seed,
                               hint="Same weights, same input: the difference is in how your modules are wired.")


@check("greedy generation from a long prompt equals the reference's", points=1)
def greedy_generation_matches_reference(impl, ref):
    config = dict(block_size=6, vocab_size=14, n_layer=2, n_head=2, n_embd=12, dropout=0.0, bias=True)
    ours, theirs = twins(impl, ref, config)
    idx = torch.randint(0, 14, (3, 11))
    out, ref_out = ours.generate(idx, 10, top_k=1), theirs.generate(idx, 10, top_k=1)
    expect_tensor(out, "generate(idx, 10, top_k=1)", tuple(ref_out.shape), torch.int64)
    if not torch.equal(out, ref_out):
        raise CheckFailure(
            f"With the same weights and top_k=1, generate gave {out[:, 11:].tolist()}, the reference "
            f"{ref_out[:, 11:].tolist()}. Crop to the last block_size tokens and use the last position's logits."
        )
