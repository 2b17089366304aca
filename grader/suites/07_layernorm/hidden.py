"""Stage 07, hidden checks: the learner's GPT against the reference's, with the same weights."""
import itertools

import torch
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st

from grader import check
from grader.checks import CheckFailure, assert_same_language_model, cause, expect_tensor, share_weights
from grader.strategies import GPT_EDGE_SIZES, gpt_sizes, split_sizes


def twins(impl, ref, config):
    """The learner's GPT and the reference's, in eval mode, holding the reference's weights."""
    ours = impl.module("gpt").GPT(impl.module("gpt").GPTConfig(**config))
    theirs = ref.module("gpt").GPT(ref.module("gpt").GPTConfig(**config))
    share_weights(ours, theirs, "Your GPT", "Use GPT-2's names.")
    return ours, theirs


def gpt_logits(state: dict, config: dict, idx: torch.Tensor, gelu: str = "none", post_norm: bool = False,
               final_norm: bool = True, positions: bool = True, tied: str = "") -> torch.Tensor:
    """The logits of the reference GPT, computed here in float64 from its state dict, or of one of
    the ways a learner's GPT commonly differs (each argument away from its default is one)."""
    w = {k: v.double() for k, v in state.items()}
    if tied == "to the head":  # one tensor: loading both names leaves it holding lm_head's matrix
        w["transformer.wte.weight"] = w["lm_head.weight"]
    elif tied == "to the embedding":
        w["lm_head.weight"] = w["transformer.wte.weight"]
    C, nh, T = config["n_embd"], config["n_head"], idx.shape[1]

    def norm(x, name):
        return F.layer_norm(x, (C,), w[f"{name}.weight"], w.get(f"{name}.bias"), eps=1e-5)

    def linear(x, name):
        return F.linear(x, w[f"{name}.weight"], w.get(f"{name}.bias"))

    def attention(x, block):
        q, k, v = linear(x, f"{block}.attn.c_attn").split(C, dim=2)
        q, k, v = (t.view(*x.shape[:2], nh, C // nh).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(x.shape)
        return linear(y, f"{block}.attn.c_proj")

    def mlp(x, block):
        hidden = linear(x, f"{block}.mlp.c_fc")
        hidden = F.relu(hidden) if gelu == "relu" else F.gelu(hidden, approximate=gelu)
        return linear(hidden, f"{block}.mlp.c_proj")

    x = F.embedding(idx, w["transformer.wte.weight"])
    if positions:
        x = x + w["transformer.wpe.weight"][:T]
    for i in range(config["n_layer"]):
        block = f"transformer.h.{i}"
        if post_norm:
            x = norm(x + attention(x, block), f"{block}.ln_1")
            x = norm(x + mlp(x, block), f"{block}.ln_2")
        else:
            x = x + attention(norm(x, f"{block}.ln_1"), block)
            x = x + mlp(norm(x, f"{block}.ln_2"), block)
    if final_norm:
        x = norm(x, "transformer.ln_f")
    return F.linear(x, w["lm_head.weight"])


# The usual differences, each as (what the learner did, in their words; gpt_logits' arguments).
DIFFERENCES = (
    ("your MLP uses GELU's tanh approximation (GPT-2's original), where this course's GPT uses the exact GELU: "
     "nn.GELU() with its default approximate='none'", dict(gelu="tanh")),
    ("your MLP uses ReLU instead of GELU: nn.GELU()", dict(gelu="relu")),
    ("your token embedding and lm_head are one tensor (weight tying, which stage 08 adds), so loading two "
     "different matrices leaves both holding lm_head's. In this stage they are separate: lm_head = "
     "nn.Linear(n_embd, vocab_size, bias=False) with its own weight", dict(tied="to the head")),
    ("your token embedding and lm_head are one tensor (weight tying, which stage 08 adds), so loading two "
     "different matrices leaves both holding the embedding's. In this stage they are separate: lm_head = "
     "nn.Linear(n_embd, vocab_size, bias=False) with its own weight", dict(tied="to the embedding")),
    ("your blocks are post-norm, x = ln_1(x + attn(x)): GPT-2 normalizes before each sublayer, "
     "x = x + attn(ln_1(x)), then x = x + mlp(ln_2(x))", dict(post_norm=True)),
    ("your GPT skips the final LayerNorm: logits = lm_head(transformer.ln_f(x))", dict(final_norm=False)),
    ("your GPT leaves out the position embeddings: x = wte(idx) + wpe(arange(T))", dict(positions=False)),
)


def explain_difference(state: dict, config: dict, idx: torch.Tensor, logits: torch.Tensor,
                       ref_logits: torch.Tensor) -> str:
    """Which of the usual differences, alone or two together, turns the reference's logits into the
    learner's (both models hold the weights in `state`)."""
    def matches(got: torch.Tensor, **variant) -> bool:
        return torch.allclose(got.double(), gpt_logits(state, config, idx, **variant), rtol=1e-4, atol=1e-5)

    # Only a recomputation that agrees with the reference can say what the learner's model does differently.
    if matches(ref_logits):
        alone = [(d, ("", {})) for d in DIFFERENCES]
        pairs = [(a, b) for a, b in itertools.combinations(DIFFERENCES, 2) if not set(a[1]) & set(b[1])]
        for (why, variant), (why_too, variant_too) in alone + pairs:
            if matches(logits, **variant, **variant_too):
                both = f"; and {why_too}" if why_too else ""
                return cause(f"Same weights, same input, different logits: {why}{both}.")
    return ("Same weights, same input, different logits, and none of the usual differences explains them (GELU's "
            "tanh approximation or ReLU, tied weights, post-norm, no final LayerNorm, no position embeddings): "
            "compare each module with its public check.")


@check("logits and loss equal the reference's with the same weights", points=3)
@settings(max_examples=8)
@given(sizes=gpt_sizes(max_layers=3), seed=st.integers(0, 1000))
@example(sizes=GPT_EDGE_SIZES, seed=0)
def logits_match_reference(impl, ref, sizes, seed):
    config, batch, T = split_sizes(sizes)
    ours, theirs = twins(impl, ref, config)
    state = theirs.state_dict()
    assert_same_language_model(ours, theirs, config["vocab_size"], batch, T, seed,
                               hint=lambda idx, logits: explain_difference(state, config, idx, logits,
                                                                           theirs(idx)[0]))


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
