"""Stage 10, hidden checks: the learner's Llama against the reference's, with the same weights."""
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from grader import check
from grader.checks import (
    CheckFailure,
    assert_close,
    assert_same_language_model,
    cause,
    expect_tensor,
    model_outputs,
    share_weights,
)
from grader.handle import LearnerError


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
                               hint=explain_difference(impl, ref, sizes, batch, T, seed))


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


def random_weights(module, gen) -> dict:
    """A state dict for `module` (the reference's) with O(1) effects: gains around 1, matrices
    scaled by 1/sqrt(fan_in)."""
    return {k: (1 + 0.3 * torch.randn(v.shape, generator=gen)) if v.dim() == 1 else
            torch.randn(v.shape, generator=gen) / v.shape[1] ** 0.5 for k, v in module.state_dict().items()}


def modules_alike(ours, theirs, what: str, gen) -> None:
    """Give the learner's module the reference's random weights; both in eval mode."""
    theirs.load_state_dict(random_weights(theirs, gen))
    share_weights(ours, theirs, what, "Use the names of the handout (wq, wk, wv, wo; w1, w2, w3; weight).", "\0")


def part_outputs(impl, ref, sizes: dict, batch: int, T: int, seed: int):
    """(what, the learner's output, the reference's) for every function, class and method of
    llama.py below the whole model, on inputs drawn from `seed`: computed one part at a time, so
    a caller can stop at the first that differs."""
    ours, theirs = impl.module("llama"), ref.module("llama")
    gen = torch.Generator().manual_seed(seed)
    dim, n_heads, n_kv, L = sizes["dim"], sizes["n_heads"], sizes["n_kv_heads"], sizes["max_seq_len"]
    hd, theta = dim // n_heads, sizes["rope_theta"]
    cos, sin = theirs.precompute_rope(hd, L, theta)
    tables = ours.precompute_rope(hd, L, theta)
    if type(tables) is not tuple or len(tables) != 2:
        raise CheckFailure(f"precompute_rope({hd}, {L}, {theta}) returned a {type(tables).__name__}; expected a pair "
                           "(cos, sin).")
    yield f"precompute_rope({hd}, {L}, {theta}), the cos table", tables[0], cos
    yield f"precompute_rope({hd}, {L}, {theta}), the sin table", tables[1], sin
    start = int(torch.randint(0, L - T + 1, (), generator=gen))
    heads = torch.randn(batch, n_heads, T, hd, generator=gen)
    yield (f"apply_rope(x of shape {tuple(heads.shape)}, cos, sin, start_pos={start})",
           ours.apply_rope(heads, cos, sin, start), theirs.apply_rope(heads, cos, sin, start))
    kv_heads, n_rep = heads[:, :n_kv], n_heads // n_kv
    yield (f"repeat_kv(x with {n_kv} heads, {n_rep})", ours.repeat_kv(kv_heads, n_rep),
           theirs.repeat_kv(kv_heads, n_rep))
    x = torch.randn(batch, T, dim, generator=gen)
    pairs = (
        (f"RMSNorm({dim}, eps={sizes['norm_eps']})(3 * x)", "RMSNorm", (dim, sizes["norm_eps"]), (3 * x,)),
        (f"FeedForward({dim}, {sizes['hidden_dim']})(x)", "FeedForward", (dim, sizes["hidden_dim"]), (x,)),
        (f"Attention({dim}, {n_heads}, {n_kv})(x, cos, sin)", "Attention", (dim, n_heads, n_kv), (x, cos, sin)),
    )
    for what, name, args, inputs in pairs:
        mine, reference = getattr(ours, name)(*args), getattr(theirs, name)(*args)
        modules_alike(mine, reference, f"Your {name}", gen)
        yield what, mine(*inputs), reference(*inputs)
    config, ref_config = ours.LlamaConfig(**sizes), theirs.LlamaConfig(**sizes)
    mine, reference = ours.TransformerBlock(config), theirs.TransformerBlock(ref_config)
    modules_alike(mine, reference, "Your TransformerBlock", gen)
    yield "TransformerBlock(config)(x, cos, sin)", mine(x, cos, sin), reference(x, cos, sin)
    # The block again with a cache: the first tokens as a prefill, the rest at their positions.
    split = T // 2
    caches = [m.KVCache(1, batch, n_kv, L, hd) for m in (ours, theirs)]
    for part, a, b in (("the prefill", 0, split), ("the tokens after it", split, T)):
        if a < b:
            yield (f"TransformerBlock(config)(x[:, {a}:{b}], cos, sin, start_pos={a}, cache=KVCache(...)), {part}",
                   mine(x[:, a:b], cos, sin, start_pos=a, cache=caches[0], layer=0),
                   reference(x[:, a:b], cos, sin, start_pos=a, cache=caches[1], layer=0))
    # KVCache.update on its own: what it returns and its length, for two layers.
    caches = [m.KVCache(2, batch, n_kv, L, hd) for m in (ours, theirs)]
    k, v = torch.randn(2, batch, n_kv, T, hd, generator=gen)
    for layer, a, b in ((1, 0, split), (1, split, T), (0, 0, T)):
        if a < b:
            what = f"KVCache.update({layer}, k, v, start_pos={a}) with {b - a} new positions"
            got, expected = (c.update(layer, k[:, :, a:b], v[:, :, a:b], a) for c in caches)
            if type(got) is not tuple or len(got) != 2:
                raise CheckFailure(f"{what} returned a {type(got).__name__}; expected a pair (keys, values).")
            yield f"the keys that {what} returns", got[0], expected[0]
            yield f"the values that {what} returns", got[1], expected[1]
            if caches[0].length != b:
                raise CheckFailure(f"After {what}, length is {caches[0].length!r}; expected {b} (start_pos + T).")


def explain_difference(impl, ref, sizes: dict, batch: int, T: int, seed: int):
    """A hint for logits that differ from the reference's: the first part of llama.py that differs alone."""
    def hint(idx, logits) -> str:
        try:
            for what, got, expected in part_outputs(impl, ref, sizes, batch, T, seed):
                if not (isinstance(got, torch.Tensor) and got.shape == expected.shape and got.dtype == expected.dtype
                        and torch.allclose(got, expected, rtol=1e-4, atol=1e-5)):
                    return cause(f"Same weights, same input, different logits: your {what} differs from the "
                                 "reference's on its own, with the same weights and inputs.")
        except (CheckFailure, LearnerError):
            pass
        else:
            return ("Same weights, same input, different logits, although RoPE, repeat_kv, RMSNorm, FeedForward, "
                    "Attention, TransformerBlock and KVCache each equal the reference's on their own: look at how "
                    "Llama puts them together (the final norm before output, config.norm_eps and config.rope_theta "
                    "passed on, the loss on the flattened logits).")
        return "Same weights, same input, different logits: compare each part of llama.py with its public check."
    return hint


@check("every function and module of llama.py equals the reference's on drawn sizes and inputs", points=2)
@settings(max_examples=6)
@given(case=llama_sizes(), seed=st.integers(0, 1000))
@example(case=(dict(vocab_size=11, dim=12, n_layers=2, n_heads=3, n_kv_heads=1, hidden_dim=20, norm_eps=1e-2,
                    rope_theta=30.0, max_seq_len=9), 2, 9), seed=0)
def every_part_matches_reference(impl, ref, case, seed):
    sizes, batch, T = case
    for what, got, expected in part_outputs(impl, ref, sizes, batch, T, seed):
        assert_close(got, expected, what, rtol=1e-4, atol=1e-5)


@check("load_hf_state_dict loads the same weights as the reference's", points=1)
def load_hf_state_dict_matches_reference(impl, ref):
    sizes = dict(vocab_size=14, dim=16, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=24, max_seq_len=20)
    ours, theirs = twins(impl, ref, sizes)
    # Hugging Face's names for the reference's weights, by its HF_BLOCK_NAMES read backwards.
    to_hf = {ours_name: hf for hf, ours_name in ref.module("llama").HF_BLOCK_NAMES.items()}
    to_hf |= {"tok_embeddings": "model.embed_tokens", "norm": "model.norm", "output": "lm_head"}
    hf = {}
    for name, tensor in theirs.state_dict().items():
        module, suffix = name.rsplit(".", 1)
        if module.startswith("layers."):
            _, i, inner = module.split(".", 2)
            hf[f"model.layers.{i}.{to_hf[inner]}.{suffix}"] = tensor
        else:
            hf[f"{to_hf[module]}.{suffix}"] = tensor
    hf = {k: v + 0.5 for k, v in hf.items()}  # weights neither model holds yet
    ours.load_hf_state_dict(hf)
    theirs.load_hf_state_dict(hf)
    got, expected = ours.state_dict(), theirs.state_dict()
    for name, tensor in expected.items():
        assert_close(got.get(name), tensor, f"{name} after load_hf_state_dict", rtol=0, atol=0,
                     hint="Map each Hugging Face name onto its own module: HF_BLOCK_NAMES inside a block, "
                          "model.embed_tokens -> tok_embeddings, model.norm -> norm, lm_head -> output.")


@check("Llama fed in chunks through a KVCache, and generate without the cache, equal the reference's", points=1)
@settings(max_examples=3)
@given(case=llama_sizes(), seed=st.integers(0, 1000))
def cached_forward_and_uncached_generate_match_reference(impl, ref, case, seed):
    sizes, batch, T = case
    ours, theirs = twins(impl, ref, sizes)
    idx = torch.randint(0, sizes["vocab_size"], (batch, T), generator=torch.Generator().manual_seed(seed))
    split = T // 2
    caches = ours.new_cache(batch), theirs.new_cache(batch)
    for a, b in ((0, split), (split, T)):
        if a < b:
            what = f"the logits of Llama(idx[:, {a}:{b}], cache=cache, start_pos={a})"
            got = model_outputs(ours, idx[:, a:b], what=what, cache=caches[0], start_pos=a)[0]
            assert_close(got, theirs(idx[:, a:b], cache=caches[1], start_pos=a)[0], what, rtol=1e-4, atol=1e-5)
    steps = min(sizes["max_seq_len"] - 1, 4)
    what = f"generate(idx[:, :1], {steps}, use_cache=False)"
    got, expected = (model.generate(idx[:, :1], steps, use_cache=False) for model in (ours, theirs))
    expect_tensor(got, what, tuple(expected.shape), torch.int64)
    if not torch.equal(got, expected):
        raise CheckFailure(f"With the same weights, {what} gave {got[:, 1:].tolist()}, the reference "
                           f"{expected[:, 1:].tolist()}. Without the cache, run the whole sequence at every step and "
                           "pick the argmax of the last position's logits.")
