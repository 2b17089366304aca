"""Stage 10, hidden checks: the learner's Llama against the reference's, with the same weights."""
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from grader import check
from grader.checks import CheckFailure, assert_same_language_model, expect_tensor


@st.composite
def llama_sizes(draw):
    n_heads = draw(st.sampled_from([1, 2, 3, 4]))
    n_kv = draw(st.sampled_from([d for d in range(1, n_heads + 1) if n_heads % d == 0]))
    L = draw(st.integers(1, 12))
    return dict(
        vocab_size=draw(st.integers(2, 30)), dim=n_heads * draw(st.sampled_from([2, 4, 6])),
        n_layers=draw(st.integers(1, 3)), n_heads=n_heads, n_kv_heads=n_kv,
        hidden_dim=draw(st.integers(1, 24)), norm_eps=draw(st.sampled_from([1e-5, 1e-2])),
        rope_theta=draw(st.sampled_from([10000.0, 30.0])), max_seq_len=L,
    ), draw(st.integers(1, 3)), draw(st.sampled_from([1, L, max(1, L // 2)]))


def twins(impl, ref, sizes):
    """The learner's Llama and the reference's, in eval mode, holding the same random weights."""
    ours = impl.module("llama").Llama(impl.module("llama").LlamaConfig(**sizes))
    theirs = ref.module("llama").Llama(ref.module("llama").LlamaConfig(**sizes))
    weights = theirs.state_dict()
    gen = torch.Generator().manual_seed(0)
    weights = {k: (1 + 0.3 * torch.randn(v.shape, generator=gen)) if v.dim() == 1 else
               torch.randn(v.shape, generator=gen) / v.shape[1] ** 0.5 for k, v in weights.items()}
    own = ours.state_dict()
    if sorted(own) != sorted(weights):
        extra, missing = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
        raise CheckFailure(f"Your Llama's state_dict differs from the reference's: extra {extra[:4]}, missing "
                           f"{missing[:4]}. Use Meta's names (tok_embeddings, layers.0.attention.wq, ...), and register "
                           "the RoPE tables with persistent=False.")
    ours.load_state_dict(weights)
    theirs.load_state_dict(weights)
    ours.eval()
    theirs.eval()
    return ours, theirs


@check("logits and loss equal the reference's with the same weights", points=3)
@settings(max_examples=8)
@given(case=llama_sizes(), seed=st.integers(0, 1000))
@example(case=(dict(vocab_size=11, dim=12, n_layers=2, n_heads=3, n_kv_heads=1, hidden_dim=20, norm_eps=1e-5,
                    rope_theta=10000.0, max_seq_len=9), 2, 9), seed=0)
def logits_match_reference(impl, ref, case, seed):
    sizes, batch, T = case
    ours, theirs = twins(impl, ref, sizes)
    assert_same_language_model(ours, theirs, sizes["vocab_size"], batch, T, seed,
                               hint="Same weights, same input: the difference is in how your modules compute or are wired.")


@check("greedy generation with the cache equals the reference's", points=1)
def greedy_generation_matches_reference(impl, ref):
    sizes = dict(vocab_size=14, dim=16, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=24, max_seq_len=20)
    ours, theirs = twins(impl, ref, sizes)
    for T in (1, 7):
        idx = torch.randint(0, 14, (2, T))
        out, ref_out = ours.generate(idx, 20 - T), theirs.generate(idx, 20 - T)
        expect_tensor(out, f"generate(idx with T={T}, {20 - T})", tuple(ref_out.shape), torch.int64)
        if not torch.equal(out, ref_out):
            raise CheckFailure(
                f"With the same weights, generate (use_cache=True, temperature 0) gave {out[:, T:].tolist()}, the "
                f"reference {ref_out[:, T:].tolist()}. Prefill the prompt, then feed one token at a time at its "
                "position, picking the argmax of the last position's logits."
            )
