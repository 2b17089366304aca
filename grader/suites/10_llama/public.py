"""Stage 10, public checks: RMSNorm, SwiGLU, RoPE, grouped-query attention, the KV cache.

Oracles: torch.nn.functional.rms_norm for RMSNorm; RoPE's formula and its properties (a
rotation keeps norms, and a query-key dot product depends only on the offset between the
two positions); attention rebuilt here from the learner's own weights; the learner's own
multi-head attention for GQA; transformers' LlamaForCausalLM (built from a small config
with random weights, no download) for the whole model; the learner's full forward pass for
the KV cache. When a value is wrong, the likely bugs are computed too, and the message
names the one that matches.
"""
import math

import torch
import torch.nn.functional as F
from hypothesis import example, given, settings
from hypothesis import strategies as st

from grader import check
from grader.checks import (
    CheckFailure,
    assert_causal,
    assert_close,
    assert_follows_device_and_dtype,
    assert_inputs_unchanged,
    assert_speed_ratio,
    assert_stable,
    cause,
    dependency_map,
    expect_raises,
    expect_tensor,
    greedy_continuation,
    likely_bug,
    measure_ratio,
    model_outputs,
    perturb_token,
)
from grader.handle import LearnerError
from grader.checks.speed import measure_calls, needs_cuda, speed_verdict
from grader.probes import build_on_device, call_moved, set_parameter, tensor_layout

# float32 results computed in a different order than the oracle's: a few ulps of O(1) values.
RTOL, ATOL = 1e-4, 1e-5


# --- helpers -------------------------------------------------------------------------------------


def rope_tables(head_dim, max_seq_len, theta=10000.0, layout="halves"):
    """RoPE's cos and sin tables, computed here: (max_seq_len, head_dim) each, float64 then float32."""
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float64), inv_freq)
    angles = torch.cat([angles, angles], -1) if layout == "halves" else angles.repeat_interleave(2, -1)
    return angles.cos().float(), angles.sin().float()


def rotate(x, cos, sin, start_pos=0, sign=1, pairs="halves"):
    """RoPE by its formula; `sign=-1` and `pairs="neighbours"` are the usual bugs."""
    T = x.shape[-2]
    cos, sin = cos[start_pos:start_pos + T], sin[start_pos:start_pos + T]
    if pairs == "halves":
        x1, x2 = x.chunk(2, dim=-1)
        turned = torch.cat([-x2, x1], dim=-1)
    else:
        turned = torch.stack([-x[..., 1::2], x[..., 0::2]], dim=-1).flatten(-2)
    return x * cos + sign * turned * sin


def llama_config(impl, **sizes):
    return impl.module("llama").LlamaConfig(**sizes)


def new_llama(impl, **sizes):
    model = impl.module("llama").Llama(llama_config(impl, **sizes))
    model.eval()
    return model


def forward(model, idx, what="model(idx)", **kwargs):
    """(logits, loss) from the learner's Llama, checked to be a pair with (B, T, V) float32 logits."""
    return model_outputs(model, idx, what=what, **kwargs)


def logits_of(model, idx, what="model(idx)", **kwargs):
    return forward(model, idx, what, **kwargs)[0]


def randomize(model_sd, gen):
    """Weights of O(1) effect: matrices scaled by 1/sqrt(fan_in), norm gains around 1."""
    out = {}
    for name, w in model_sd.items():
        if w.dim() == 1:
            out[name] = 1 + 0.3 * torch.randn(w.shape, generator=gen)
        elif "embed" in name or "tok_embeddings" in name:
            out[name] = torch.randn(w.shape, generator=gen)
        else:
            out[name] = torch.randn(w.shape, generator=gen) / math.sqrt(w.shape[1])
    return out


@st.composite
def attention_sizes(draw):
    """(dim, n_heads, n_kv_heads, batch, T) with even head sizes, GQA, MQA and MHA."""
    n_heads = draw(st.sampled_from([1, 2, 3, 4, 6]))
    n_kv = draw(st.sampled_from([d for d in range(1, n_heads + 1) if n_heads % d == 0]))
    head_dim = draw(st.sampled_from([2, 4, 6]))
    return n_heads * head_dim, n_heads, n_kv, draw(st.integers(1, 2)), draw(st.integers(1, 7))


# --- RMSNorm -------------------------------------------------------------------------------------


def rmsnorm_bugs(x, weight, eps):
    ms = x.pow(2).mean(-1, keepdim=True)
    centred = x - x.mean(-1, keepdim=True)
    yield ("Your RMSNorm subtracts the mean first: that is LayerNorm. RMSNorm only divides by the root mean "
           "square, x / sqrt(mean(x**2) + eps), with no mean subtraction.",
           centred * torch.rsqrt(centred.pow(2).mean(-1, keepdim=True) + eps) * weight)
    yield ("Your RMSNorm subtracts the mean first: that is LayerNorm. RMSNorm only divides by the root mean "
           "square, x / sqrt(mean(x**2) + eps), with no mean subtraction.",
           centred * torch.rsqrt(ms + eps) * weight)
    yield ("Your RMSNorm adds eps outside the square root: x / (sqrt(mean(x**2)) + eps). It belongs inside: "
           "x / sqrt(mean(x**2) + eps).", x / (ms.sqrt() + eps) * weight)
    yield ("Your RMSNorm divides by the mean square instead of its square root.", x / (ms + eps) * weight)
    yield ("Your RMSNorm uses the sum of the squares instead of their mean.",
           x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + eps) * weight)
    yield ("Your RMSNorm ignores its weight: multiply the normalized x by self.weight.",
           x * torch.rsqrt(ms + eps))
    for other in (1e-5, 1e-6, 0.0):
        yield ("Your RMSNorm ignores the eps it was given: keep the constructor's eps and use it in forward.",
               x * torch.rsqrt(ms + other) * weight)
    yield ("Your RMSNorm takes its mean over the batch dimension (dim=0); each token is normalized over its own "
           "features, dim=-1.", x * torch.rsqrt(x.pow(2).mean(0, keepdim=True) + eps) * weight)


@check("RMSNorm equals torch's rms_norm: x / sqrt(mean(x**2) + eps) * weight", points=3)
@settings(max_examples=12)
@given(batch=st.integers(1, 3), T=st.integers(1, 5), C=st.integers(1, 16), eps=st.sampled_from([1e-5, 1e-3, 0.3]),
       seed=st.integers(0, 1000))
@example(batch=2, T=3, C=8, eps=0.3, seed=1)
def rmsnorm_matches_torch(impl, batch, T, C, eps, seed):
    gen = torch.Generator().manual_seed(seed)
    norm = impl.module("llama").RMSNorm(C, eps=eps)
    weight = 1 + 0.5 * torch.randn(C, generator=gen)
    impl.probe(set_parameter, norm, "weight", weight)
    # An offset, so that subtracting the mean shows; a small scale, so that eps matters.
    x = 0.4 * (1 + torch.randn(batch, T, C, generator=gen))
    name = f"RMSNorm({C}, eps={eps})(x)"
    got = norm(x)
    expect_tensor(got, name, tuple(x.shape), torch.float32, hint="RMSNorm returns a tensor shaped like its input.")
    expected = F.rms_norm(x, (C,), weight, eps)
    hint = likely_bug(got, expected, rmsnorm_bugs(x, weight, eps),
                      "Expected x / sqrt(mean(x**2, dim=-1) + eps) * weight, with no mean subtraction and no bias.")
    assert_close(got, expected, name, rtol=RTOL, atol=ATOL, hint=hint)


@check("RMSNorm has one learnable weight of ones and no bias", points=1)
def rmsnorm_parameters(impl):
    norm = impl.module("llama").RMSNorm(6)
    layout = impl.probe(tensor_layout, norm)
    params = layout["parameters"]
    if "weight" not in params:
        where = " (it is a plain tensor attribute)" if "weight" in layout["attributes"] else ""
        raise CheckFailure(f"RMSNorm(6) has no parameter named 'weight'{where}; it has {sorted(params)}. "
                           "Make it nn.Parameter(torch.ones(dim)) so the optimizer trains it.")
    if params != {"weight": (6,)}:
        raise CheckFailure(f"RMSNorm(6) should have exactly one parameter, weight of shape (6,), but it has {params}. "
                           "RMSNorm has no bias (and no mean subtraction): only a gain.")
    sd = norm.state_dict()
    if not torch.equal(sd["weight"], torch.ones(6)):
        raise CheckFailure(f"RMSNorm's weight starts at {sd['weight'].tolist()}; it should start at ones, so a fresh "
                           "RMSNorm only normalizes.")


# --- SwiGLU --------------------------------------------------------------------------------------


@check("FeedForward is SwiGLU: w2(silu(w1(x)) * w3(x)), no biases", points=3)
@settings(max_examples=6)
@given(dim=st.integers(1, 12), hidden=st.integers(1, 24), T=st.integers(1, 4), seed=st.integers(0, 100))
@example(dim=8, hidden=20, T=3, seed=0)
def swiglu_values(impl, dim, hidden, T, seed):
    ff = impl.module("llama").FeedForward(dim, hidden)
    shapes = impl.probe(tensor_layout, ff)["parameters"]
    want = {"w1.weight": (hidden, dim), "w2.weight": (dim, hidden), "w3.weight": (hidden, dim)}
    if shapes != want:
        raise CheckFailure(f"FeedForward({dim}, {hidden}) has parameters {shapes}; expected {want}: w1 and w3 widen "
                           "dim -> hidden_dim, w2 narrows back, all nn.Linear(..., bias=False).")
    sd = ff.state_dict()
    w1, w2, w3 = sd["w1.weight"], sd["w2.weight"], sd["w3.weight"]
    x = torch.randn(2, T, dim, generator=torch.Generator().manual_seed(seed))
    got = ff(x)
    name = f"FeedForward({dim}, {hidden})(x)"
    expect_tensor(got, name, tuple(x.shape), torch.float32)
    gate, up = x @ w1.T, x @ w3.T
    expected = (F.silu(gate) * up) @ w2.T

    def bugs():
        yield ("Your SiLU is on the wrong branch: it goes on the gate w1(x), not on the up projection w3(x): "
               "w2(silu(w1(x)) * w3(x)).", (gate * F.silu(up)) @ w2.T)
        yield "Your FeedForward applies SiLU to the product; it goes on the gate w1(x) only.", F.silu(gate * up) @ w2.T
        yield "Your FeedForward has no SiLU: w2(silu(w1(x)) * w3(x)).", (gate * up) @ w2.T
        yield "Your FeedForward uses GELU; SwiGLU uses SiLU (F.silu) on the gate.", (F.gelu(gate) * up) @ w2.T
        yield "Your FeedForward uses ReLU; SwiGLU uses SiLU (F.silu) on the gate.", (F.relu(gate) * up) @ w2.T
        yield ("Your FeedForward adds the two branches; SwiGLU multiplies them: silu(w1(x)) * w3(x).",
               (F.silu(gate) + up) @ w2.T)
        yield "Your FeedForward forgets the up projection w3: w2(silu(w1(x)) * w3(x)).", F.silu(gate) @ w2.T

    hint = likely_bug(got, expected, bugs(), "Expected w2(silu(w1(x)) * w3(x)), computed from your own weights.")
    assert_close(got, expected, name, rtol=RTOL, atol=ATOL, hint=hint)


# --- RoPE ----------------------------------------------------------------------------------------


@check("precompute_rope gives the cos and sin of position * theta**(-2i/head_dim), in two halves", points=2)
@settings(max_examples=6)
@given(head_dim=st.sampled_from([2, 4, 8, 16]), L=st.integers(1, 40), theta=st.sampled_from([10000.0, 500.0, 2.0]))
@example(head_dim=8, L=16, theta=500.0)
def rope_tables_match(impl, head_dim, L, theta):
    out = impl.module("llama").precompute_rope(head_dim, L, theta)
    if type(out) is not tuple or len(out) != 2:
        raise CheckFailure(f"precompute_rope should return a pair (cos, sin), but it returned a {type(out).__name__}.")
    cos, sin = out
    half = "Each row holds the head_dim // 2 angles twice, one copy per half: cat([angles, angles], dim=-1)."
    expect_tensor(cos, f"cos of precompute_rope({head_dim}, {L}, {theta})", (L, head_dim), torch.float32, hint=half)
    expect_tensor(sin, f"sin of precompute_rope({head_dim}, {L}, {theta})", (L, head_dim), torch.float32, hint=half)
    want_cos, want_sin = rope_tables(head_dim, L, theta)

    def bugs():
        yield ("Your tables interleave the angles (pairs of neighbouring dimensions 2i, 2i+1, Meta's original "
               "layout). This course, like Hugging Face, pairs dimension i with i + head_dim // 2: "
               "cat([angles, angles], dim=-1).", rope_tables(head_dim, L, theta, layout="neighbours")[0])
        yield ("Your tables ignore the theta argument (they use 10000). Use the theta you are given: the model "
               "passes config.rope_theta.", rope_tables(head_dim, L, 10000.0)[0])
        yield ("Your frequencies use i / head_dim; the exponent is 2i / head_dim (torch.arange(0, head_dim, 2) / "
               "head_dim).", rope_tables(head_dim * 2, L, theta)[0][:, list(range(head_dim // 2)) * 2])
        yield ("Your cos and sin are swapped: return (cos, sin).", want_sin)

    hint = likely_bug(cos, want_cos, bugs(), "Expected cos(m * theta ** (-2i / head_dim)) at row m, column i and "
                      "i + head_dim // 2.")
    assert_close(cos, want_cos, f"cos of precompute_rope({head_dim}, {L}, {theta})", rtol=1e-4, atol=1e-4, hint=hint)
    assert_close(sin, want_sin, f"sin of precompute_rope({head_dim}, {L}, {theta})", rtol=1e-4, atol=1e-4,
                 hint=cause("Your cos table is right and your sin table is not: use the same angles for both."))


@check("an odd head size raises a clear ValueError (RoPE rotates pairs of dimensions)", points=1)
def rope_odd_head_size_raises(impl):
    llama = impl.module("llama")
    attempts = (
        ("precompute_rope(5, 8)", lambda: llama.precompute_rope(5, 8)),
        ("Llama(LlamaConfig(vocab_size=10, dim=15, n_layers=1, n_heads=3))",
         lambda: llama.Llama(llama.LlamaConfig(vocab_size=10, dim=15, n_layers=1, n_heads=3))),
    )
    for what, attempt in attempts:
        try:
            attempt()
        except LearnerError as exc:
            text = str(exc.original)
            if not isinstance(exc.original, ValueError) or not any(w in text.lower() for w in ("even", "odd")):
                raise CheckFailure(
                    f"{what} raised {type(exc.original).__name__}: {text!r} ({exc.where or 'in your code'}). Raise a "
                    "ValueError that says the head size must be even (RoPE rotates dimensions in pairs), at the start "
                    "of precompute_rope."
                ) from None
            continue
        raise CheckFailure(f"{what} (head size 5) returned without an error. RoPE rotates dimensions in pairs, so the "
                           "head size must be even: raise a ValueError saying so in precompute_rope.")


@check("apply_rope rotates the two halves of each head by the position's angles", points=3)
@settings(max_examples=8)
@given(B=st.integers(1, 2), H=st.integers(1, 3), T=st.integers(1, 6), head_dim=st.sampled_from([2, 4, 8]),
       seed=st.integers(0, 100))
@example(B=1, H=2, T=5, head_dim=8, seed=0)
def rope_matches_formula(impl, B, H, T, head_dim, seed):
    cos, sin = rope_tables(head_dim, 16, 100.0)
    x = torch.randn(B, H, T, head_dim, generator=torch.Generator().manual_seed(seed))
    name = f"apply_rope(x of shape {(B, H, T, head_dim)}, cos, sin)"
    got = impl.module("llama").apply_rope(x, cos, sin)
    expect_tensor(got, name, tuple(x.shape), torch.float32, hint="apply_rope returns a tensor shaped like x.")
    expected = rotate(x, cos, sin)

    def bugs():
        yield ("Your rotation has the wrong sign: rotate the halves (x1, x2) to cat([-x2, x1]), not cat([x2, -x1]); "
               "out = x * cos + cat([-x2, x1]) * sin.", rotate(x, cos, sin, sign=-1))
        yield ("Your apply_rope pairs neighbouring dimensions (2i, 2i+1), Meta's original layout; this course, "
               "like Hugging Face, pairs dimension i with i + head_dim // 2 (the two halves of the head).",
               rotate(x, cos, sin, pairs="neighbours"))
        yield "Your apply_rope does not rotate at all: out = x * cos + cat([-x2, x1]) * sin.", x
        yield "Your apply_rope forgets the rotated term: out = x * cos + cat([-x2, x1]) * sin.", x * cos[:T]
        yield "Your apply_rope multiplies x itself by sin; the sin term takes the rotated halves cat([-x2, x1]).", \
            x * cos[:T] + x * sin[:T]

    hint = likely_bug(got, expected, bugs(), "Expected x * cos + cat([-x2, x1]) * sin, with x1, x2 the halves of the "
                      "head dimension and the rows 0..T-1 of the tables.")
    assert_close(got, expected, name, rtol=RTOL, atol=ATOL, hint=hint)


@check("RoPE keeps vector norms, and q.k depends only on the offset between positions", points=2)
@settings(max_examples=5)
@given(head_dim=st.sampled_from([2, 4, 8, 16]), m=st.integers(0, 20), n=st.integers(0, 20), shift=st.integers(1, 10),
       seed=st.integers(0, 100))
def rope_properties(impl, head_dim, m, n, shift, seed):
    llama = impl.module("llama")
    cos, sin = llama.precompute_rope(head_dim, 64)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 2, 6, head_dim, generator=gen)
    rotated = llama.apply_rope(x, cos, sin, m)
    expect_tensor(rotated, "apply_rope(x, cos, sin, start_pos)", tuple(x.shape), torch.float32)
    assert_close(rotated.norm(dim=-1), x.norm(dim=-1), f"the norms of apply_rope(x, ..., start_pos={m}) per token",
                 rtol=1e-4, atol=1e-5, hint="A rotation never changes a vector's length: each pair (x1, x2) must come "
                 "out as (x1 cos - x2 sin, x2 cos + x1 sin), with cos and sin of the same angle.")
    q, k = torch.randn(1, 1, 1, head_dim, generator=gen), torch.randn(1, 1, 1, head_dim, generator=gen)

    def score(a, b):
        return (llama.apply_rope(q, cos, sin, a) * llama.apply_rope(k, cos, sin, b)).sum()

    assert_close(score(m + shift, n + shift), score(m, n),
                 f"q.k with q at position {m + shift} and k at {n + shift}, against q at {m} and k at {n}",
                 rtol=1e-4, atol=1e-4, hint="Moving both tokens by the same amount must not change their attention "
                 "score: that is what makes RoPE a relative position encoding. Rotate every pair by position * its "
                 "frequency, the same way for queries and keys.")
    if abs(score(m, m) - score(m, m + 3)) < 1e-6 * (1 + abs(score(m, m))):
        raise CheckFailure(f"q.k is the same for k at position {m} and at {m + 3}: your apply_rope does not depend on "
                           "the position (start_pos). Token t of x is at position start_pos + t.")


@check("apply_rope(x, cos, sin, start_pos) rotates token t by position start_pos + t", points=2)
@settings(max_examples=5)
@given(T=st.integers(1, 5), start=st.integers(1, 10), seed=st.integers(0, 100))
@example(T=1, start=7, seed=0)
def rope_start_pos_offset(impl, T, start, seed):
    cos, sin = rope_tables(8, 16, 100.0)
    x = torch.randn(2, 3, T, 8, generator=torch.Generator().manual_seed(seed))
    got = impl.module("llama").apply_rope(x, cos, sin, start)
    name = f"apply_rope(x with T={T}, cos, sin, start_pos={start})"
    expect_tensor(got, name, tuple(x.shape), torch.float32)
    expected = rotate(x, cos, sin, start)
    hint = likely_bug(got, expected, [("Your apply_rope ignores start_pos: it rotates token t by position t. When "
                                        "decoding with a cache, the new token sits at position start_pos: use the rows "
                                        "cos[start_pos : start_pos + T].", rotate(x, cos, sin, 0))],
                      "Token t of x sits at position start_pos + t: use the rows cos[start_pos : start_pos + T].")
    assert_close(got, expected, name, rtol=RTOL, atol=ATOL, hint=hint)


# --- grouped-query attention ---------------------------------------------------------------------


@check("repeat_kv gives key/value head j to the contiguous query heads [j*g, (j+1)*g)", points=2)
def repeat_kv_groups(impl):
    llama = impl.module("llama")
    x = torch.arange(2, dtype=torch.float32).view(1, 2, 1, 1).expand(2, 2, 3, 4).contiguous()
    x = x + torch.randn(2, 2, 3, 4) * 0.01
    for n_rep in (1, 3):
        got = llama.repeat_kv(x, n_rep)
        name = f"repeat_kv(x with 2 key/value heads, n_rep={n_rep})"
        expect_tensor(got, name, (2, 2 * n_rep, 3, 4), torch.float32)
        expected = x.repeat_interleave(n_rep, dim=1)
        hint = likely_bug(got, expected, [(
            "Your repeat_kv tiles the heads ([a, b] -> [a, b, a, b, ...], what .repeat does); each key/value head must "
            "serve a contiguous group of query heads ([a, a, a, b, b, b]): x.repeat_interleave(n_rep, dim=1).",
            x.repeat(1, n_rep, 1, 1))],
            "Expected x.repeat_interleave(n_rep, dim=1): heads [a, b] become [a, a, a, b, b, b].")
        assert_close(got, expected, name, rtol=0, atol=0, hint=hint)


def attention_formula(x, sd, n_heads, n_kv, cos, sin, rope_values=False, repeat="interleave", rope=True, scale=None):
    B, T, dim = x.shape
    hd = dim // n_heads
    q = (x @ sd["wq.weight"].T).view(B, T, n_heads, hd).transpose(1, 2)
    k = (x @ sd["wk.weight"].T).view(B, T, n_kv, hd).transpose(1, 2)
    v = (x @ sd["wv.weight"].T).view(B, T, n_kv, hd).transpose(1, 2)
    if rope:
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
    if rope_values:
        v = rotate(v, cos, sin)
    g = n_heads // n_kv
    if repeat == "interleave":
        k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
    else:
        k, v = k.repeat(1, g, 1, 1), v.repeat(1, g, 1, 1)
    scores = q @ k.transpose(-2, -1) * (scale or 1 / math.sqrt(hd))
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    y = scores.softmax(-1) @ v
    return y.transpose(1, 2).reshape(B, T, dim) @ sd["wo.weight"].T


@check("Attention: RoPE on q and k, causal softmax over head_dim-scaled scores, GQA, wo", points=3)
@settings(max_examples=8)
@given(sizes=attention_sizes(), seed=st.integers(0, 100))
@example(sizes=(16, 4, 2, 2, 6), seed=0)
def attention_matches_formula(impl, sizes, seed):
    dim, n_heads, n_kv, B, T = sizes
    attn = impl.module("llama").Attention(dim, n_heads, n_kv)
    hd = dim // n_heads
    shapes = impl.probe(tensor_layout, attn)["parameters"]
    want = {"wq.weight": (dim, dim), "wk.weight": (n_kv * hd, dim), "wv.weight": (n_kv * hd, dim),
            "wo.weight": (dim, dim)}
    if shapes != want:
        raise CheckFailure(f"Attention({dim}, n_heads={n_heads}, n_kv_heads={n_kv}) has parameters {shapes}; expected "
                           f"{want}: wq for {n_heads} query heads, wk and wv for {n_kv} key/value heads of size "
                           f"{hd}, all nn.Linear(..., bias=False).")
    sd = attn.state_dict()
    cos, sin = rope_tables(hd, 16, 100.0)
    x = torch.randn(B, T, dim, generator=torch.Generator().manual_seed(seed))
    name = f"Attention({dim}, {n_heads}, {n_kv})(x, cos, sin)"
    got = attn(x, cos, sin)
    expect_tensor(got, name, (B, T, dim), torch.float32)
    expected = attention_formula(x, sd, n_heads, n_kv, cos, sin)

    def bugs():
        yield ("Your Attention applies RoPE to the values too. RoPE goes on queries and keys only: their dot "
               "product carries the relative position; values carry content.",
               attention_formula(x, sd, n_heads, n_kv, cos, sin, rope_values=True))
        yield ("Your Attention repeats the key/value heads with .repeat (tiling); key/value head j serves query "
               "heads [j*g, (j+1)*g): use repeat_interleave.", attention_formula(x, sd, n_heads, n_kv, cos, sin,
                                                                                  repeat="tile"))
        yield "Your Attention does not apply RoPE to q and k.", attention_formula(x, sd, n_heads, n_kv, cos, sin,
                                                                                  rope=False)
        yield "Your Attention scales the scores by 1/sqrt(dim); scale by 1/sqrt(head_dim).", \
            attention_formula(x, sd, n_heads, n_kv, cos, sin, scale=1 / math.sqrt(dim))

    hint = likely_bug(got, expected, bugs(), "Expected wo(softmax(mask(rope(q) rope(k)^T / sqrt(head_dim))) v), with "
                      "each key/value head repeated for its group of query heads; computed from your own weights.")
    assert_close(got, expected, name, rtol=RTOL, atol=ATOL, hint=hint)


@check("Attention leaves the values unrotated (RoPE only on queries and keys)", points=2)
def attention_rope_not_on_values(impl):
    # With wq = wk = 0 every score is 0, whatever RoPE does to q and k: each position averages
    # the values of positions 0..t uniformly. Rotated values would change that average.
    dim, n_heads, T = 8, 2, 6
    attn = impl.module("llama").Attention(dim, n_heads, n_heads)
    sd = attn.state_dict()
    sd["wq.weight"] = torch.zeros_like(sd["wq.weight"])
    sd["wk.weight"] = torch.zeros_like(sd["wk.weight"])
    attn.load_state_dict(sd)
    cos, sin = rope_tables(dim // n_heads, 16, 100.0)
    x = torch.randn(1, T, dim)
    got = attn(x, cos, sin)
    expect_tensor(got, f"Attention({dim}, {n_heads}, {n_heads})(x, cos, sin)", (1, T, dim), torch.float32)
    v = x @ sd["wv.weight"].T
    expected = (v.cumsum(1) / torch.arange(1, T + 1).view(1, T, 1)) @ sd["wo.weight"].T
    rotated_v = rotate(v.view(1, T, n_heads, -1).transpose(1, 2), cos, sin).transpose(1, 2).reshape(1, T, dim)
    hint = likely_bug(got, expected, [(
        "Your Attention rotates the values with RoPE. Apply RoPE to the queries and keys only: the position belongs "
        "in their dot product, not in the content that the values carry.",
        (rotated_v.cumsum(1) / torch.arange(1, T + 1).view(1, T, 1)) @ sd["wo.weight"].T)],
        "With wq = wk = 0 every score is 0, so position t must average the values of positions 0..t uniformly "
        "(the causal mask), then apply wo.")
    assert_close(got, expected, "attention output with wq = wk = 0 (uniform causal averages of the values)",
                 rtol=RTOL, atol=ATOL, hint=hint)


@check("grouped-query attention equals multi-head attention with each key/value head copied to its group", points=2)
@settings(max_examples=4)
@given(case=st.sampled_from([(4, 2), (6, 2), (6, 3), (4, 1)]), seed=st.integers(0, 100))
@example(case=(4, 2), seed=0)
def gqa_equals_mha(impl, case, seed):
    n_heads, n_kv = case
    hd, T = 4, 5
    dim, g = n_heads * hd, n_heads // n_kv
    llama = impl.module("llama")
    gqa, mha = llama.Attention(dim, n_heads, n_kv), llama.Attention(dim, n_heads, n_heads)
    sd = randomize(gqa.state_dict(), torch.Generator().manual_seed(seed))
    gqa.load_state_dict(sd)

    def copied(tile=False):
        out = dict(sd)
        for name in ("wk.weight", "wv.weight"):
            w = sd[name].view(n_kv, hd, dim)
            out[name] = (w.repeat(g, 1, 1) if tile else w.repeat_interleave(g, 0)).reshape(n_heads * hd, dim)
        return out

    cos, sin = rope_tables(hd, 16)
    x = torch.randn(2, T, dim, generator=torch.Generator().manual_seed(seed + 1))
    got = gqa(x, cos, sin)
    mha.load_state_dict(copied())
    expected = mha(x, cos, sin)
    name = f"Attention({dim}, n_heads={n_heads}, n_kv_heads={n_kv})(x)"
    expect_tensor(got, name, tuple(expected.shape), torch.float32)
    if not torch.allclose(got, expected, RTOL, ATOL):
        mha.load_state_dict(copied(tile=True))
        if torch.allclose(got, mha(x, cos, sin), RTOL, ATOL):
            hint = cause("Your key/value heads are tiled across the query heads (.repeat): query head h uses "
                         f"key/value head h % {n_kv}. Key/value head j serves the contiguous query heads [j*{g}, "
                         f"(j+1)*{g}): use repeat_interleave(n_rep, dim=1).")
        else:
            hint = (f"Your grouped-query attention should equal your own Attention({dim}, {n_heads}, {n_heads}) whose "
                    "wk and wv hold each key/value head's rows copied to its group of query heads. Repeat the keys "
                    "and values with repeat_kv after RoPE, before the scores.")
        assert_close(got, expected, name + " against multi-head attention with copied key/value weights",
                     rtol=RTOL, atol=ATOL, hint=hint)


# --- the whole model -----------------------------------------------------------------------------


HF_SIZES = (
    dict(vocab_size=40, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=56, norm_eps=1e-5, rope_theta=500.0,
         max_seq_len=32),
    dict(vocab_size=23, dim=24, n_layers=1, n_heads=2, n_kv_heads=2, hidden_dim=40, norm_eps=1e-3, rope_theta=10000.0,
         max_seq_len=16),
    dict(vocab_size=17, dim=48, n_layers=2, n_heads=6, n_kv_heads=1, hidden_dim=64, norm_eps=1e-6, rope_theta=50.0,
         max_seq_len=20),
)


def hf_model(sizes, seed):
    """transformers' LlamaForCausalLM with these sizes and random O(1) weights; never downloads."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=sizes["vocab_size"], hidden_size=sizes["dim"], intermediate_size=sizes["hidden_dim"],
        num_hidden_layers=sizes["n_layers"], num_attention_heads=sizes["n_heads"],
        num_key_value_heads=sizes["n_kv_heads"], rms_norm_eps=sizes["norm_eps"], rope_theta=sizes["rope_theta"],
        max_position_embeddings=sizes["max_seq_len"], tie_word_embeddings=False, attention_bias=False,
        mlp_bias=False, attn_implementation="eager",
    )
    model = LlamaForCausalLM(config).eval()
    sd = randomize(model.state_dict(), torch.Generator().manual_seed(seed))
    model.load_state_dict(sd)
    return model, sd


def swapped(sd, a, b):
    out = dict(sd)
    for name in sd:
        if a in name:
            out[name], out[name.replace(a, b)] = sd[name.replace(a, b)], sd[name]
    return out


@check("with a transformers LlamaForCausalLM's weights, the logits equal transformers'", points=4)
def hf_logits_match(impl):
    for n, sizes in enumerate(HF_SIZES):
        hf, sd = hf_model(sizes, seed=n)
        model = new_llama(impl, **sizes)
        model.load_hf_state_dict(sd)
        idx = torch.randint(0, sizes["vocab_size"], (2, sizes["max_seq_len"]))
        with torch.no_grad():
            expected = hf(idx).logits.float()
        got = logits_of(model, idx)
        if torch.allclose(got, expected, RTOL, ATOL):
            continue
        hint = ("Same weights, same tokens, different logits. The other checks of this stage test RMSNorm, SwiGLU, "
                "RoPE and the attention on their own; if they pass, look at the wiring: pre-norm blocks "
                "(h = x + attention(attention_norm(x)); out = h + feed_forward(ffn_norm(h))), the final norm before "
                "output, config.norm_eps and config.rope_theta passed on, and the name mapping in load_hf_state_dict.")
        for a, b, bug in (("mlp.gate_proj", "mlp.up_proj", "gate_proj belongs to w1 (the SiLU branch), up_proj to w3"),
                          ("input_layernorm", "post_attention_layernorm",
                           "input_layernorm is attention_norm, post_attention_layernorm is ffn_norm")):
            other = new_llama(impl, **sizes)
            other.load_hf_state_dict(swapped(sd, a, b))
            if torch.allclose(logits_of(other, idx), expected, RTOL, ATOL):
                hint = cause(f"Your load_hf_state_dict swaps two Hugging Face names: {bug}.")
        what = ", ".join(f"{k}={v}" for k, v in sizes.items())
        assert_close(got, expected, f"logits ({what})", rtol=RTOL, atol=ATOL, hint=hint)
    _, loss = forward(model, idx[:, :-1], "model(idx, targets)", targets=idx[:, 1:])
    expect_tensor(loss, "loss", (), torch.float32)
    assert_close(loss, F.cross_entropy(expected[:, :-1].reshape(-1, sizes["vocab_size"]), idx[:, 1:].reshape(-1)),
                 "loss", rtol=1e-4, atol=1e-5, hint="The loss is the mean cross-entropy of the flattened logits and "
                 "targets.")


@check("Llama is causal: the logits at position t depend only on tokens 0..t", points=2)
def llama_is_causal(impl):
    V, T = 13, 8
    model = new_llama(impl, vocab_size=V, dim=16, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=T)
    deps = dependency_map(lambda idx: logits_of(model, idx), torch.randint(0, V, (2, T)), perturb_token(V))
    assert_causal(deps, "Llama(idx) logits", require_self=True,
                  hint="Query t may see keys 0..t only: mask the scores above the diagonal with -inf before the "
                       "softmax (or pass the mask to scaled_dot_product_attention); RMSNorm must use dim=-1 only.")


@check("forward refuses positions past max_seq_len with a clear error", points=1)
def forward_rejects_beyond_max_seq_len(impl):
    L = 6
    model = new_llama(impl, vocab_size=9, dim=8, n_layers=1, n_heads=2, max_seq_len=L)
    for what, kwargs, T in (("model(idx) with T=8", {}, 8), ("model(idx, start_pos=4) with T=3, so start_pos + T = 7",
                                                             {"start_pos": 4}, 3)):
        try:
            model(torch.randint(0, 9, (1, T)), **kwargs)
        except LearnerError as exc:
            text = str(exc.original)
            if not any(s in text for s in ("max_seq_len", "max seq len", str(L))):
                raise CheckFailure(
                    f"{what} > max_seq_len={L} raised {type(exc.original).__name__}: {text!r} "
                    f"({exc.where or 'in your code'}), which does not say what is wrong. Check start_pos + T against "
                    "max_seq_len at the start of forward and raise a ValueError that names max_seq_len."
                ) from None
            continue
        raise CheckFailure(f"{what} ran past max_seq_len={L} without an error: the RoPE tables have no rows there. "
                           "Raise a ValueError that names max_seq_len.")


# --- the KV cache --------------------------------------------------------------------------------


def cache_keys(cache):
    """The cache's keys as documented, (n_layers, B, n_kv_heads, max_seq_len, head_dim), or None."""
    try:
        k = cache.k
    except LearnerError:
        return None
    return k if isinstance(k, torch.Tensor) and k.dim() == 5 else None


def cache_tensor(cache, name):
    """The cache's attribute `name` when it is a tensor, else None."""
    try:
        value = getattr(cache, name)
    except LearnerError:
        return None
    return value if isinstance(value, torch.Tensor) else None


def decode_hint(cache, before, P, t):
    """Why the decoding step at position t went wrong, from what the cache holds."""
    after = cache_keys(cache)
    if before is not None and after is not None and after.shape == before.shape:
        if not torch.equal(after[:, :, :, :t], before[:, :, :, :t]):
            where = int((after[:, :, :, :t] != before[:, :, :, :t]).any(dim=(0, 1, 2, 4)).nonzero()[0])
            return cause(f"Decoding the token at position {t} overwrote position {where} of the cache: store the new "
                         "key and value at position start_pos (cache.k[layer, :, :, start_pos:start_pos + T] = k).")
        if torch.equal(after[:, :, :, t], before[:, :, :, t]):
            return cause(f"Decoding the token at position {t} left the cache unchanged: store its key and value at "
                         "position start_pos before attending.")
    first = "the first token after the prefill" if t == P else f"the token at position {t}"
    return (f"The logits of {first}, fed alone with start_pos={t}, differ from the full forward pass. Rotate it at its "
            "own position (apply_rope(..., start_pos)), store its key and value at position start_pos of the cache, "
            "and let it attend to all start_pos + 1 cached positions (a mask for 1 query and start_pos + 1 keys).")


@check("with a KV cache, a prefill then one token at a time gives the logits of a full forward pass", points=4)
@settings(max_examples=5)
@given(n_heads=st.sampled_from([2, 4]), g=st.sampled_from([1, 2]), L=st.integers(3, 10), P=st.integers(1, 9),
       seed=st.integers(0, 100))
@example(n_heads=4, g=2, L=8, P=1, seed=0)
@example(n_heads=4, g=2, L=9, P=4, seed=1)
def kv_cache_matches_full_forward(impl, n_heads, g, L, P, seed):
    P = min(P, L - 1)
    V = 19
    sizes = dict(vocab_size=V, dim=4 * n_heads, n_layers=2, n_heads=n_heads, n_kv_heads=n_heads // g, max_seq_len=L)
    model = new_llama(impl, **sizes)
    model.load_state_dict(randomize(model.state_dict(), torch.Generator().manual_seed(seed)))
    idx = torch.randint(0, V, (2, L), generator=torch.Generator().manual_seed(seed))
    full = logits_of(model, idx)  # to max_seq_len: the last decoding step fills the cache exactly
    cache = model.new_cache(2)
    length = cache.length
    if length != 0:
        raise CheckFailure(f"A new cache has length {length!r}; it should be 0 (nothing stored yet).")
    prefill = logits_of(model, idx[:, :P], f"model(idx[:, :{P}], cache=cache)", cache=cache)
    if not torch.allclose(prefill, full[:, :P], RTOL, ATOL):
        keys = cache_keys(cache)
        if keys is not None and keys.shape[3] >= P and not keys[:, :, :, :P].any():
            hint = cause("The prefill did not store its keys in the cache (cache.k is still all zeros at positions "
                         f"0..{P - 1}): in update, write k and v at positions start_pos .. start_pos + T - 1 before "
                         "returning them, and attend to what update returns.")
        else:
            hint = cause("The prefill with a cache differs from the same tokens without one: attend to the keys and "
                         "values that cache.update returns, and keep the causal mask during the prefill (with T > 1 "
                         "new tokens, token t may only see positions <= t), also when a cache is given.")
        assert_close(prefill, full[:, :P], f"the prefill's logits (the first {P} tokens, with a cache)", rtol=RTOL,
                     atol=ATOL, hint=hint)
    if cache.length != P:
        raise CheckFailure(f"After a prefill of {P} tokens, cache.length is {cache.length!r}; it should be {P}. "
                           "update sets it to start_pos + T.")
    for t in range(P, L):
        before = cache_keys(cache)
        step = logits_of(model, idx[:, t:t + 1], f"model(idx[:, {t}:{t + 1}], cache=cache, start_pos={t})",
                         cache=cache, start_pos=t)
        if not torch.allclose(step, full[:, t:t + 1], RTOL, ATOL):
            assert_close(step, full[:, t:t + 1], f"the logits of the token at position {t}, decoded with the cache "
                         f"after a prefill of {P} (max_seq_len={L})", rtol=RTOL, atol=ATOL,
                         hint=decode_hint(cache, before, P, t))
    if cache.length != L:
        raise CheckFailure(f"After decoding up to position {L - 1}, cache.length is {cache.length!r}; expected {L}.")


@check("with a KV cache, a prompt fed in two chunks gives the logits of a full forward pass", points=2)
def kv_cache_chunked_prefill(impl):
    V, L = 21, 12
    model = new_llama(impl, vocab_size=V, dim=16, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=L)
    model.load_state_dict(randomize(model.state_dict(), torch.Generator().manual_seed(3)))
    idx = torch.randint(0, V, (2, L))
    full = logits_of(model, idx)
    for split in (5, 9):
        cache = model.new_cache(2)
        first = logits_of(model, idx[:, :split], cache=cache)
        assert_close(first, full[:, :split], f"the logits of the first chunk (tokens 0..{split - 1})", rtol=RTOL,
                     atol=ATOL, hint="The first chunk, with an empty cache, must equal a forward without a cache.")
        second = logits_of(model, idx[:, split:], f"model(idx[:, {split}:], cache=cache, start_pos={split})",
                           cache=cache, start_pos=split)
        assert_close(second, full[:, split:], f"the logits of the second chunk (tokens {split}..{L - 1}, "
                     f"start_pos={split})", rtol=RTOL, atol=ATOL,
                     hint=cause("With T new queries after start_pos cached positions, the mask has T rows and "
                                "start_pos + T columns, and query t may see keys 0..start_pos + t: the mask must be "
                                "offset by start_pos (torch.ones(T, S).tril(diagonal=start_pos)). A plain tril, or "
                                "is_causal=True in scaled_dot_product_attention, aligns it top-left and hides cached "
                                "positions."))


@check("generate gives the same greedy tokens with and without the cache", points=2)
def generate_cache_same(impl):
    V, L = 25, 16
    model = new_llama(impl, vocab_size=V, dim=16, n_layers=2, n_heads=4, n_kv_heads=1, max_seq_len=L)
    model.load_state_dict(randomize(model.state_dict(), torch.Generator().manual_seed(5)))
    for T in (1, 6):
        idx = torch.randint(0, V, (3, T))
        steps = L - T  # up to max_seq_len
        expected = greedy_continuation(model, idx, steps)
        for use_cache in (False, True):
            what = f"generate(idx with T={T}, {steps}, use_cache={use_cache})"
            out = model.generate(idx, steps, use_cache)
            expect_tensor(out, what, (3, L), torch.int64)
            if not torch.equal(out[:, :T], idx):
                raise CheckFailure(f"{what} changed the prompt: its first {T} columns must be idx itself.")
            if not torch.equal(out, expected):
                row, step = (int(i) for i in (out != expected).nonzero()[0])
                how = ("With use_cache=True, run the prompt once into model.new_cache(B), then feed only the newest "
                       "token, model(next_token, cache=cache, start_pos=its position), at each step."
                       if use_cache else "Without the cache, run the whole sequence at every step.")
                raise CheckFailure(
                    f"{what} should pick the most likely token at every step (temperature 0), but in row {row} the "
                    f"token at position {step} differs: got {out[row, T:].tolist()}, expected "
                    f"{expected[row, T:].tolist()} (the argmax of full forward passes). {how}"
                )


# --- general properties (grader/checks/properties.py) -----------------------------------------


PROPERTY_SIZES = dict(vocab_size=11, dim=16, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=24, max_seq_len=8)
IN_PLACE_NAMES = ("x", "cos", "sin")


def property_parts(impl):
    """(what, module, inputs) for each module of the stage, sized by PROPERTY_SIZES, with RoPE
    tables computed here: RMSNorm, FeedForward, Attention and TransformerBlock."""
    llama = impl.module("llama")
    x = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(0))
    cos, sin = rope_tables(4, 8, 100.0)
    return [("RMSNorm(x)", llama.RMSNorm(16), (x,)), ("FeedForward(x)", llama.FeedForward(16, 24), (x,)),
            ("Attention(x, cos, sin)", llama.Attention(16, 4, 2), (x, cos, sin)),
            ("TransformerBlock(x, cos, sin)", llama.TransformerBlock(llama_config(impl, **PROPERTY_SIZES)),
             (x, cos, sin))]


def heads_input():
    """(B, heads, T, head_dim) queries or keys, and RoPE tables long enough for start_pos=2."""
    cos, sin = rope_tables(4, 8, 100.0)
    return torch.randn(2, 3, 5, 4, generator=torch.Generator().manual_seed(1)), cos, sin


@check("every module, apply_rope, repeat_kv, KVCache.update and Llama leave their inputs unchanged, even inputs "
       "that require grad", points=1)
def inputs_unchanged(impl):
    llama = impl.module("llama")
    for what, module, inputs in property_parts(impl):
        assert_inputs_unchanged(impl, module, *inputs, what=what, names=IN_PLACE_NAMES)
    x, cos, sin = heads_input()
    assert_inputs_unchanged(impl, llama.apply_rope, x, cos, sin, 2, what="apply_rope(x, cos, sin, start_pos=2)",
                            names=IN_PLACE_NAMES)
    assert_inputs_unchanged(impl, llama.repeat_kv, x, 2, what="repeat_kv(x, 2)", names=("x",))
    cache = llama.KVCache(1, 2, 3, 8, 4)
    assert_inputs_unchanged(impl, cache.update, 0, x, 2 * x, 2, what="KVCache.update(0, k, v, start_pos=2)",
                            names=("layer", "k", "v"))
    model = new_llama(impl, **PROPERTY_SIZES)
    idx = torch.randint(0, 11, (2, 7), generator=torch.Generator().manual_seed(2))
    assert_inputs_unchanged(impl, model, idx[:, :-1], idx[:, 1:], what="Llama(idx, targets)", names=("idx", "targets"))


@check("every module, apply_rope, repeat_kv and Llama (with a cache too) follow their inputs' device and dtype "
       "(meta, float64), and KVCache honours dtype= and device=", points=1)
def follows_device_and_dtype(impl):
    llama = impl.module("llama")
    for what, module, inputs in property_parts(impl):
        assert_follows_device_and_dtype(impl, module, *inputs, what=what)
    x, cos, sin = heads_input()
    assert_follows_device_and_dtype(impl, llama.apply_rope, x, cos, sin, 2, what="apply_rope(x, cos, sin, start_pos=2)")
    assert_follows_device_and_dtype(impl, llama.repeat_kv, x, 2, what="repeat_kv(x, 2)")
    what = "KVCache(2, 2, 2, 8, 4, dtype=torch.float64, device='meta')"
    cache = llama.KVCache(2, 2, 2, 8, 4, dtype=torch.float64, device="meta")
    for name in ("k", "v"):
        stored = cache_tensor(cache, name)  # a cache that appends may start without tensors: nothing to judge
        if stored is not None and (stored.dtype != torch.float64 or stored.device.type != "meta"):
            raise CheckFailure(
                f"{what}.{name} is a {stored.dtype} tensor on {stored.device.type}, expected torch.float64 on meta.\n"
                + cause("Your KVCache ignores its dtype= and device= arguments: pass them on to the tensors it "
                        "makes (torch.zeros(shape, dtype=dtype, device=device)), so that a model on a GPU in "
                        "bf16 gets its cache there too.")
            )
    # The logits are float32 whatever the model's dtype (the docstring), so the Llama keeps its
    # float32 on meta; its parts were tried in float64 above.
    model = new_llama(impl, **PROPERTY_SIZES)
    idx = torch.randint(0, 11, (2, 6), generator=torch.Generator().manual_seed(3))
    assert_follows_device_and_dtype(impl, model, idx, idx, what="Llama(idx, targets)", dtype=None)
    cache = llama.KVCache(2, 2, 2, 8, 4, device="meta")
    assert_follows_device_and_dtype(impl, model, idx[:, :5], what="Llama(idx, cache=cache), the prefill", dtype=None,
                                    cache=cache)
    assert_follows_device_and_dtype(impl, model, idx[:, 5:], what="Llama(one token, cache=cache, start_pos=5)",
                                    dtype=None, cache=cache, start_pos=5)


@check("in bfloat16, RMSNorm returns bfloat16 and Llama still returns float32 logits", points=1)
def bfloat16_dtypes(impl):
    llama = impl.module("llama")
    x = torch.randn(2, 3, 16, generator=torch.Generator().manual_seed(4))
    normed = impl.probe(call_moved, llama.RMSNorm(16), (x,), {}, "cpu", torch.bfloat16)
    expect_tensor(normed, "RMSNorm(16) in bfloat16, applied to a bfloat16 x,", tuple(x.shape))
    if normed.dtype != torch.bfloat16:
        raise CheckFailure(
            f"RMSNorm(16) in bfloat16 returned a {normed.dtype} tensor for a bfloat16 x; it should return x's dtype.\n"
            + cause("Your RMSNorm computes in float32 (good: squares lose digits in bf16) but does not cast back: "
                    "turn the normalized x back into x's dtype with .type_as(x) before multiplying by the weight.")
        )
    model = new_llama(impl, **PROPERTY_SIZES)
    idx = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(5))
    out = impl.probe(call_moved, model, (idx,), {}, "meta", torch.bfloat16, True)
    logits = out[0] if type(out) is list and out else out
    if not isinstance(logits, dict) or logits.get("dtype") != "torch.float32":
        got = f"{logits['dtype']} logits" if isinstance(logits, dict) else f"{out!r}"[:80]
        raise CheckFailure(
            f"Llama(idx) in bfloat16 (on the meta device) returned {got}; the logits are documented as float32.\n"
            + cause("Your Llama returns the output layer's dtype: convert the logits with .float() after "
                    "self.output(...), so that the loss and sampling work in float32 whatever the model's dtype.")
        )


@check("RMSNorm and Attention stay finite and correct on large activations (x times 10 and 100)", points=1)
def stable_on_large_inputs(impl):
    _, norm, (x,) = property_parts(impl)[0]
    assert_stable(impl, norm, x, what="RMSNorm(x)", rtol=1e-4, atol=1e-5,
                  hint="\n" + cause("Compute x / sqrt(mean(x**2) + eps) with the mean of the squares over the "
                                    "last dimension; torch.rsqrt(...) keeps it finite."))
    _, attention, inputs = property_parts(impl)[2]
    assert_stable(impl, attention, *inputs, what="Attention(x, cos, sin)", rtol=1e-3, atol=1e-4,
                  hint="\n" + cause("Large scores overflow exp(): use F.softmax (or F.scaled_dot_product_attention), "
                                    "which subtracts each row's max first."))


def sampling_model(impl, V=6):
    """A one-layer Llama whose next-token distribution after [1, 3] is far from uniform."""
    model = new_llama(impl, vocab_size=V, dim=8, n_layers=1, n_heads=2, max_seq_len=12)
    model.load_state_dict(randomize(model.state_dict(), torch.Generator().manual_seed(3)))
    return model


@check("generate with temperature > 0 samples from softmax(logits / temperature)", points=1)
def generate_samples_with_temperature(impl):
    V, N = 6, 2000
    model = sampling_model(impl, V)
    prompt = torch.tensor([[1, 3]]).repeat(N, 1)
    logits = logits_of(model, prompt[:1])[0, -1].double()
    for temperature in (0.5, 2.0):
        what = f"generate(idx, 1, temperature={temperature}) on {N} copies of one prompt"
        out = model.generate(prompt, 1, temperature=temperature)
        expect_tensor(out, what, (N, 3), torch.int64)
        if out.min() < 0 or out.max() >= V:
            raise CheckFailure(f"{what} gave the token {int(out.max() if out.max() >= V else out.min())}, outside [0, {V}).")
        drawn = torch.bincount(out[:, 2], minlength=V).double() / N
        expected = torch.softmax(logits / temperature, -1)
        if (drawn - expected).abs().max() <= 0.05:
            continue
        shown = ", ".join(f"{p:.2f}" for p in drawn)
        wanted = ", ".join(f"{p:.2f}" for p in expected)
        known = (("Your generate multiplies the logits by the temperature; divide them: softmax(logits / "
                  "temperature).", torch.softmax(logits * temperature, -1)),
                 ("Your generate ignores the temperature: sample from softmax(logits / temperature).",
                  torch.softmax(logits, -1)),
                 ("Your generate picks the most likely token even with temperature > 0: sample with "
                  "torch.multinomial(softmax(logits / temperature), 1).", F.one_hot(logits.argmax(), V).double()))
        why = next((text for text, p in known if (drawn - p).abs().max() <= 0.05),
                   "Sample each row's next token from softmax(last position's logits / temperature).")
        raise CheckFailure(f"{what} drew the tokens 0..{V - 1} with frequencies [{shown}]; softmax(logits / "
                           f"temperature) gives [{wanted}] (within 0.05 expected).\n{cause(why)}")


@check("generate with temperature > 0 draws new tokens on every call (no fixed seed inside)", points=1)
def generate_draws_anew(impl):
    model = sampling_model(impl)
    prompt = torch.tensor([[1, 3]]).repeat(4, 1)
    first, second = model.generate(prompt, 5, temperature=2.0), model.generate(prompt, 5, temperature=2.0)
    expect_tensor(first, "generate(idx, 5, temperature=2.0)", (4, 7), torch.int64)
    if torch.equal(first, second):  # the runner seeds each check: the same verdict on every run
        raise CheckFailure(
            "Two calls of generate(idx, 5, temperature=2.0) from the same prompts gave the same 20 tokens.\n"
            + cause("Your generate seeds the random numbers itself (torch.manual_seed, or a generator with a fixed "
                    "seed, inside generate?). Leave seeding to the caller: torch.multinomial draws from PyTorch's "
                    "global random numbers, which move on after each call.")
        )


@check("generate called again, with another prompt and batch size, behaves as new", points=1)
def generate_again_behaves_as_new(impl):
    V, L = 13, 12
    sizes = dict(vocab_size=V, dim=16, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=L)
    model = new_llama(impl, **sizes)
    weights = randomize(model.state_dict(), torch.Generator().manual_seed(6))
    model.load_state_dict(weights)
    gen = torch.Generator().manual_seed(7)
    prompts = [torch.randint(0, V, (3, 5), generator=gen), torch.randint(0, V, (2, 2), generator=gen)]
    model.generate(prompts[0], 4)
    second = prompts[1]
    what = "generate(a 2-row prompt, 6), called after generate(a 3-row prompt, 4) on the same model"
    try:
        out = model.generate(second, 6)
    except LearnerError as exc:
        fresh = new_llama(impl, **sizes)
        fresh.load_state_dict(weights)
        fresh.generate(second, 6)  # the same call on a model that has not generated before
        raise CheckFailure(
            f"{what} raised {type(exc.original).__name__}: {str(exc.original)[:160]} ({exc.where or 'in your code'}); "
            "the same call on a new model with the same weights works.\n"
            + cause("Your generate keeps state from the call before (a cache kept on the model?): start every call "
                    "from a new cache, self.new_cache(B), sized for this call's batch.")
        ) from None
    expect_tensor(out, what, (2, 8), torch.int64)
    expected = greedy_continuation(model, second, 6)
    if not torch.equal(out, expected):
        raise CheckFailure(
            f"{what} gave {out[:, 2:].tolist()}, but greedy decoding gives {expected[:, 2:].tolist()}.\n"
            + cause("Your generate keeps state from the call before (a cache or positions kept on the model?): "
                    "start every call from a new cache, self.new_cache(B), and position 0.")
        )


@check("forward and generate raise a ValueError past max_seq_len, as documented", points=1)
def max_seq_len_errors_are_value_errors(impl):
    model = new_llama(impl, vocab_size=9, dim=8, n_layers=1, n_heads=2, max_seq_len=6)
    prompt = torch.randint(0, 9, (1, 4), generator=torch.Generator().manual_seed(8))
    calls = (("model(idx) with T=7 > max_seq_len=6", lambda: model(torch.zeros(1, 7, dtype=torch.long))),
             ("model(idx, start_pos=4) with T=3 > max_seq_len=6 - 4", lambda: model(prompt[:, :3], start_pos=4)),
             ("generate(a 4-token prompt, 3) with max_seq_len=6", lambda: model.generate(prompt, 3)),
             ("generate(a 4-token prompt, 3, use_cache=False) with max_seq_len=6",
              lambda: model.generate(prompt, 3, use_cache=False)))
    for what, call in calls:
        expect_raises(call, ValueError, what,
                      hint="\n" + cause("Past max_seq_len, forward (and so generate) must raise a ValueError that "
                                        "names max_seq_len, checked at the start of forward: not an assert, another "
                                        "error type, or a failure deeper in the model."))


@check("load_hf_state_dict ignores rotary_emb.inv_freq and refuses a missing, an unknown or a misshapen entry",
       points=1)
def load_hf_state_dict_is_strict(impl):
    sd = hf_model(HF_SIZES[1], seed=4)[1]
    inv_freq = "model.layers.0.self_attn.rotary_emb.inv_freq"  # older transformers keep it in the state dict
    try:
        new_llama(impl, **HF_SIZES[1]).load_hf_state_dict(dict(sd, **{inv_freq: torch.ones(3)}))
    except LearnerError as exc:
        raise CheckFailure(
            f"load_hf_state_dict refused a state dict holding {inv_freq}: {type(exc.original).__name__}: "
            f"{str(exc.original)[:160]} ({exc.where or 'in your code'}).\n"
            + cause("Skip every entry whose name ends in rotary_emb.inv_freq: your model computes its own RoPE "
                    "tables.")
        ) from None
    first = "model.layers.0.mlp.up_proj.weight"
    misshapen = dict(sd)
    misshapen[first] = sd[first][:-1]
    for what, broken, why in (
            (f"a state dict without {first}", {k: v for k, v in sd.items() if k != first},
             "Your load_hf_state_dict accepts a state dict with a weight missing: load with "
             "self.load_state_dict(mapped, strict=True), which refuses missing and unexpected names."),
            ("a state dict with an unknown entry model.layers.0.mlp.extra_proj.weight",
             dict(sd, **{"model.layers.0.mlp.extra_proj.weight": sd[first]}),
             "Your load_hf_state_dict skips names it does not know: raise an error for any Hugging Face entry that "
             "has no place in your model (only rotary_emb.inv_freq is ignored)."),
            (f"a state dict whose {first} lacks a row", misshapen,
             "Your load_hf_state_dict accepts a weight of the wrong shape: load_state_dict(..., strict=True) refuses "
             "it.")):
        try:
            new_llama(impl, **HF_SIZES[1]).load_hf_state_dict(broken)
        except LearnerError:
            continue
        raise CheckFailure(f"load_hf_state_dict({what}) returned without an error; it loads strictly.\n{cause(why)}")


def llama_formula(idx, sd, sizes):
    """Llama's logits by its formula, from transformers-named weights (hf_model's): the grader's
    own model, which never caches."""
    dim, n_heads, eps = sizes["dim"], sizes["n_heads"], sizes["norm_eps"]
    cos, sin = rope_tables(dim // n_heads, idx.shape[1], sizes["rope_theta"])
    x = sd["model.embed_tokens.weight"][idx]
    for i in range(sizes["n_layers"]):
        p = f"model.layers.{i}."
        h = F.rms_norm(x, (dim,), sd[p + "input_layernorm.weight"], eps)
        projections = {f"w{c}.weight": sd[f"{p}self_attn.{c}_proj.weight"] for c in "qkvo"}
        x = x + attention_formula(h, projections, n_heads, sizes["n_kv_heads"], cos, sin)
        h = F.rms_norm(x, (dim,), sd[p + "post_attention_layernorm.weight"], eps)
        gate, up = h @ sd[p + "mlp.gate_proj.weight"].T, h @ sd[p + "mlp.up_proj.weight"].T
        x = x + (F.silu(gate) * up) @ sd[p + "mlp.down_proj.weight"].T
    return F.rms_norm(x, (dim,), sd["model.norm.weight"], eps) @ sd["lm_head.weight"].T


def greedy_without_cache(idx, max_new_tokens, sd, sizes):
    """What generate does without a cache: the whole sequence through the model for every new token."""
    for _ in range(max_new_tokens):
        idx = torch.cat([idx, llama_formula(idx, sd, sizes)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx


CACHE_CPU = dict(vocab_size=128, dim=128, n_layers=2, n_heads=4, n_kv_heads=2, hidden_dim=256, norm_eps=1e-5,
                 rope_theta=10000.0, max_seq_len=160)


@check("on the CPU, generating with the cache is faster than the whole sequence for every token", points=1)
def cache_speed_cpu(impl):
    # Each step without a cache runs the whole sequence (96 to 159 tokens); with it, one token. The
    # baseline is the grader's own model (llama_formula, the same weights), so that how fast the
    # learner's use_cache=False runs decides nothing. Measured on a busy 2-core machine, one thread,
    # CPU time: the reference's cached generate takes 0.31x of the baseline, its uncached one 0.95x.
    _, sd = hf_model(CACHE_CPU, seed=5)
    model = new_llama(impl, **CACHE_CPU)
    model.load_hf_state_dict(sd)
    new = 64

    def greedy_continuations(answers, _):
        """Each timed answer must continue its prompt greedily under these weights, judged here."""
        for tokens in answers:
            expect_tensor(tokens, f"generate(idx, {new}, use_cache=True)", (1, 96 + new), torch.int64)
            logits = llama_formula(tokens[:, :-1], sd, CACHE_CPU)[0, 96 - 1:]
            unlikely = logits.gather(-1, tokens[0, 96:, None])[:, 0] < logits.max(-1).values - 1e-3
            if not unlikely.any():
                continue
            step = int(unlikely.nonzero()[0])
            raise CheckFailure(
                f"While it was timed, generate(a new 96-token prompt, {new}, use_cache=True) chose token "
                f"{int(tokens[0, 96 + step])} at new position {step}, which is not the most likely one under "
                "transformers' weights loaded with load_hf_state_dict (the checks of the KV cache and of "
                "load_hf_state_dict show why)."
            )

    # A new prompt for every run (a secret seed), CPU time read by the grader for each side.
    result = measure_calls((impl, model.generate, new, True), (None, greedy_without_cache, new, sd, CACHE_CPU),
                           lambda gen: (torch.randint(0, 128, (1, 96), generator=gen),), calls=1, repeats=3,
                           what=f"generate(a new 96-token prompt, {new}, use_cache=True)", agree=greedy_continuations)
    assert_speed_ratio(result, 0.6, f"generate(96-token prompt, {new}, use_cache=True), timed against the grader's own "
                       "model running the whole sequence for every new token,",
                       hint="The cache does not pay: with use_cache=True, each step must feed only the newest token "
                       "(model(next_token, cache=cache, start_pos=...)), not the whole sequence.")


CACHE_MAX_RATIO = 0.5  # benchmarks/GPU.md, "The KV cache"
# About 370M parameters (0.74 GB in bf16), built by build_on_device on the GPU, never in host
# memory. Eight prompts at once, so that the uncached passes are bound by compute while the
# cached steps stay bound by kernel launches (see benchmarks/GPU.md).
CACHE_LLAMA = dict(vocab_size=4096, dim=2048, n_layers=8, n_heads=16, n_kv_heads=4, max_seq_len=768)


def cache_model(impl, device, dtype, sizes):
    """The learner's Llama of `sizes`, in eval mode, built on `device` in `dtype` (not in host memory first)."""
    model = impl.probe(build_on_device, impl.module("llama").Llama, llama_config(impl, **sizes), device, dtype)
    model.eval()
    return model


def cache_verdict(impl, device="cuda", dtype=torch.bfloat16, sizes=CACHE_LLAMA, batch=8, prompt=512, new=256,
                  repeats=3):
    """generate with the cache against generate without it, the learner's Llama both times."""
    model = cache_model(impl, device, dtype, sizes)
    # New prompts for every run, from a secret seed: a remembered answer gains nothing.
    result = measure_ratio(lambda idx: model.generate(idx, new, True), lambda idx: model.generate(idx, new, False),
                           repeats=repeats, warmup=1, device=device,
                           inputs=lambda gen: torch.randint(0, sizes["vocab_size"], (batch, prompt), generator=gen).to(device))
    return speed_verdict(
        result, CACHE_MAX_RATIO,
        f"generate({batch} prompts of {prompt} tokens, {new}, use_cache=True) in {str(dtype).removeprefix('torch.')} "
        "against use_cache=False",
        hint="The cache must make each new token cost one position's work: feed only the newest token, keep the "
             "cache preallocated in the model's dtype and device (new_cache), and avoid copying the whole cache "
             "(torch.cat) at every step.",
    )


@check("on a GPU in bf16, the KV cache decodes at least 2x faster than no cache (8 prompts of 512 tokens, 256 new)",
       points=2)
def cache_speed_cuda(impl):
    needs_cuda()
    cache_verdict(impl).enforce()


# check id -> (the function that measures it, its arguments for a CPU smoke run: tiny, the same
# code path in bf16 on the CPU, thresholds not applied). Only the project's tests
# (tests/test_gpu_smoke.py) and `python -m grader gpucheck --smoke` pass them.
GPU_CHECKS = {
    "cache_speed_cuda": (cache_verdict, dict(device="cpu", sizes=dict(vocab_size=64, dim=32, n_layers=1, n_heads=4,
                                                                   n_kv_heads=2, max_seq_len=48), batch=2, prompt=16, new=16)),
}
