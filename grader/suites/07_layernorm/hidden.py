"""Stage 07, hidden checks: the learner's GPT against the reference's, with the same weights."""
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from grader import check
from grader.checks import CheckFailure, assert_same_language_model, expect_tensor


@st.composite
def gpt_sizes(draw):
    n_head = draw(st.sampled_from([1, 2, 3, 5]))
    block_size = draw(st.integers(1, 12))
    return dict(
        block_size=block_size, vocab_size=draw(st.integers(2, 30)), n_layer=draw(st.integers(1, 3)), n_head=n_head,
        n_embd=n_head * draw(st.integers(1, 4)), dropout=0.0, bias=draw(st.booleans()),
    ), draw(st.integers(1, 3)), draw(st.sampled_from([1, block_size, max(1, block_size // 2)]))


def twins(impl, ref, config):
    """The learner's GPT and the reference's, in eval mode, holding the reference's weights."""
    ours = impl.module("gpt").GPT(impl.module("gpt").GPTConfig(**config))
    theirs = ref.module("gpt").GPT(ref.module("gpt").GPTConfig(**config))
    weights = theirs.state_dict()
    own = ours.state_dict()
    # Buffers of the attention (a causal mask, say) are stage 06's business: share what both have.
    unknown = sorted(k for k in own if k not in weights and ".attn." not in k)
    if unknown:
        raise CheckFailure(f"Your GPT has entries the reference does not: {', '.join(unknown[:4])}. Use GPT-2's names.")
    missing = sorted(k for k in weights if k not in own and ".attn." not in k)
    if missing:
        raise CheckFailure(f"Your GPT lacks {', '.join(missing[:4])}, which the reference has. Use GPT-2's names.")
    ours.load_state_dict({k: v for k, v in weights.items() if k in own}, strict=False)
    ours.eval()
    theirs.eval()
    return ours, theirs


@check("logits and loss equal the reference's with the same weights", points=3)
@settings(max_examples=8)
@given(case=gpt_sizes(), seed=st.integers(0, 1000))
@example(case=(dict(block_size=16, vocab_size=11, n_layer=2, n_head=3, n_embd=6, dropout=0.0, bias=True), 1, 16), seed=0)
def logits_match_reference(impl, ref, case, seed):
    config, batch, T = case
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
