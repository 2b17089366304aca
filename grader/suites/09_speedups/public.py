"""Stage 09, public checks: the fast training loop.

Oracles: the attention is compared with stage 06's masked attention computed here from the
learner's own weights; the padded model with an unpadded stage 08 GPT2 holding the same
weights; the training step runs on grader models (grader.probes.TinyLM, TinyDDP) with a
recording optimizer, and its gradients are compared with one big batch computed here.
The GPU checks time the learner's code in bf16 and skip without CUDA; benchmarks/GPU.md has
the reasoning behind their thresholds.
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
    assert_stable,
    assert_weight_stats,
    cause,
    dependency_map,
    expect_raises,
    expect_tensor,
    likely_bug,
    measure_ratio,
    perturb_vector,
)
from grader.checks.speed import (
    SpeedVerdict,
    assert_speed_ratio,
    fresh_batches,
    measure_calls,
    needs_cuda,
    seed_of,
    speed_verdict,
    timed_answers_agree,
)
from grader.handle import LearnerError
from grader.probes import (
    TinyDDP,
    TinyLM,
    attention_calls,
    attention_step,
    compiled_loss,
    float32_matmuls,
    make_step_trainer,
    run_train_step,
    set_parameter,
    tf32_after,
    with_environment,
)

RTOL, ATOL = 1e-4, 1e-5


# --- helpers -------------------------------------------------------------------------------------


def masked_attention(x, state, n_head, causal=True, transpose=True):
    """Stage 06's attention from the weights in `state`: scores, -inf mask, softmax, @ v, c_proj."""
    B, T, C = x.shape
    hs = C // n_head
    q, k, v = F.linear(x, state["c_attn.weight"], state.get("c_attn.bias")).split(C, dim=2)

    def heads(t):
        return t.reshape(B, T, n_head, hs).transpose(1, 2) if transpose else t.reshape(B, n_head, T, hs)

    q, k, v = heads(q), heads(k), heads(v)
    att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
    if causal:
        att = att.masked_fill(~torch.ones(T, T, dtype=torch.bool, device=x.device).tril(), float("-inf"))
    y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
    return F.linear(y, state["c_proj.weight"], state.get("c_proj.bias"))


def new_attention(impl, n_embd, n_head, block_size, dropout=0.0, bias=True, train=False):
    attn = impl.module("train").CausalSelfAttention(n_embd, n_head, block_size, dropout=dropout, bias=bias)
    attn.train() if train else attn.eval()
    return attn


def gpt2_config(impl, **sizes):
    return impl.module("train").GPT2Config(**sizes)


def fast_gpt2(impl, **sizes):
    model = impl.module("train").FastGPT2(gpt2_config(impl, **sizes))
    model.eval()
    return model


def random_batches(k, batch, T, vocab_size, seed):
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randint(0, vocab_size, (batch, T), generator=gen), torch.randint(0, vocab_size, (batch, T), generator=gen))
        for _ in range(k)
    ]


def big_batch_gradients(batches, seed=0, vocab_size=11, weights=None):
    """The gradients of TinyLM(seed) (with `weights` instead, when given) on all micro-batches at
    once, as one batch: what accumulation must give."""
    model = TinyLM(vocab_size=vocab_size, seed=seed)
    if weights is not None:
        model.load_state_dict(weights, strict=False)
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    _, loss = model(x, y)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


# The recording optimizer's learning rate (when the check has train_step set none of its own): what
# the steps applied can then be read from the weights, whatever the optimizer's records say.
APPLIED_LR = 1.0


def train_steps(impl, model, steps, **kwargs):
    """run_train_step on the learner's train_step; checks the (loss, norm) floats it returns, and
    that the gradients the optimizer recorded are the ones the weights show it applied."""
    witness = "lr" not in kwargs
    before = {name: p.detach().clone() for name, p in model.named_parameters()}  # the grader's own model
    result = impl.probe(run_train_step, impl.module("train").train_step, model, steps,
                        **({"optimizer_lr": APPLIED_LR} if witness else {}), **kwargs)
    for i, returned in enumerate(result["returned"]):
        if type(returned) is not tuple or len(returned) != 2 or not all(type(v) is float for v in returned):
            shown = returned if not isinstance(returned, tuple) else tuple(type(v).__name__ for v in returned)
            raise CheckFailure(
                f"train_step should return (loss, norm), a tuple of two Python floats, but call {i + 1} returned "
                f"{shown!r}. Use .item() on the 0-dim tensors."
            )
    if len(result["steps"]) != len(steps):
        raise CheckFailure(
            f"train_step was called {len(steps)} time(s) and called optimizer.step() {len(result['steps'])} time(s); "
            "each call is one optimizer step, after all its micro-batches."
        )
    if witness:
        after = result["parameters_after"]
        for name, value in before.items():
            applied = (value - after[name]) / APPLIED_LR
            seen = sum((step["grads"][name] for step in result["steps"] if step["grads"].get(name) is not None),
                       torch.zeros_like(value))
            if not torch.allclose(applied, seen, rtol=1e-3, atol=1e-5):
                raise CheckFailure(
                    f"The weights of {name} moved by other gradients than the ones optimizer.step() was seen holding. "
                    "train_step must update the model only through optimizer.step(), once per call."
                )
    return result


def total_norm(grads):
    return torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values() if g is not None)).item()


def compare_grads(got, expected, what, hint):
    for name, value in expected.items():
        g = got.get(name)
        if g is None:
            raise CheckFailure(f"{what}: parameter {name} had no gradient when optimizer.step() ran. {hint}")
        assert_close(g, value, f"{what}: the gradient of {name}", rtol=1e-4, atol=1e-6, hint=hint)


# --- TF32 ----------------------------------------------------------------------------------------


@check("configure_tf32 lets float32 matmuls use TF32", points=1)
def tf32_enabled(impl):
    result = impl.probe(tf32_after, impl.module("train").configure_tf32)
    if result["cuda_matmul"] != "tf32":
        raise CheckFailure(
            f"After configure_tf32(), torch.backends.cuda.matmul.fp32_precision is {result['cuda_matmul']!r}, "
            "expected 'tf32': float32 matmuls still run in full precision. Call "
            "torch.set_float32_matmul_precision('high') ('highest' is the default, full float32)."
        )


# --- flash attention -----------------------------------------------------------------------------


@check("CausalSelfAttention equals stage 06's masked attention, with the same weights", points=3)
@settings(max_examples=10)
@given(n_head=st.sampled_from([1, 2, 3, 5]), hs=st.integers(1, 4), block_size=st.integers(1, 12),
       batch=st.integers(1, 3), bias=st.booleans(), seed=st.integers(0, 1000), data=st.data())
@example(n_head=3, hs=2, block_size=16, batch=1, bias=True, seed=0, data=None)
def sdpa_matches_masked_attention(impl, n_head, hs, block_size, batch, bias, seed, data):
    C = n_head * hs
    T = block_size if data is None else data.draw(st.sampled_from([1, block_size, max(1, block_size // 2)]))
    attn = new_attention(impl, C, n_head, block_size, bias=bias)
    state = attn.state_dict()
    expected_keys = {"c_attn.weight": (3 * C, C), "c_proj.weight": (C, C)}
    if bias:
        expected_keys.update({"c_attn.bias": (3 * C,), "c_proj.bias": (C,)})
    got_keys = {k: tuple(v.shape) for k, v in state.items() if k in expected_keys or k.startswith(("c_attn", "c_proj"))}
    if got_keys != expected_keys:
        raise CheckFailure(
            f"CausalSelfAttention({C}, {n_head}, {block_size}, bias={bias}) has weights {got_keys}; expected "
            f"{expected_keys}: stage 06's c_attn and c_proj, so FastGPT2 can copy stage 08's weights into it."
        )
    x = torch.randn(batch, T, C, generator=torch.Generator().manual_seed(seed))
    got = attn(x)
    expect_tensor(got, "CausalSelfAttention(x)", (batch, T, C), torch.float32)
    expected = masked_attention(x, state, n_head)
    bugs = (
        ("Your attention is not causal: every position sees the whole sequence. Pass is_causal=True to "
         "F.scaled_dot_product_attention.", masked_attention(x, state, n_head, causal=False)),
        ("Your heads are split with a bare view(B, nh, T, hs), which mixes positions and heads: use "
         ".view(B, T, nh, hs).transpose(1, 2), as in stage 06.", masked_attention(x, state, n_head, transpose=False)),
    )
    hint = likely_bug(got, expected, bugs, "Expected stage 06's result: softmax(q k^T / sqrt(hs)) with the future "
                      "masked, @ v, heads merged, then c_proj.")
    assert_close(got, expected, f"CausalSelfAttention(x) with n_head={n_head}, T={T}", rtol=RTOL, atol=ATOL, hint=hint)


@check("CausalSelfAttention is causal: no position sees a later one", points=2)
def sdpa_is_causal(impl):
    attn = new_attention(impl, 12, 3, 8)
    x = torch.randn(2, 8, 12)
    deps = dependency_map(lambda inp: attn(inp), x, perturb_vector)
    assert_causal(deps, "CausalSelfAttention", require_self=True,
                  hint=cause("is_causal=True is missing: F.scaled_dot_product_attention masks the future only "
                             "with is_causal=True."))


@check("CausalSelfAttention calls scaled_dot_product_attention once, is_causal=True, no (T, T) softmax", points=2)
def sdpa_called_with_is_causal(impl):
    x = torch.randn(2, 6, 8)
    for train, dropout in ((False, 0.1), (True, 0.25)):
        attn = new_attention(impl, 8, 2, 6, dropout=dropout, train=train)
        mode = "train" if train else "eval"
        calls = impl.probe(attention_calls, attn, x)
        if len(calls["sdpa"]) != 1:
            raise CheckFailure(
                f"In {mode} mode, CausalSelfAttention.forward called F.scaled_dot_product_attention "
                f"{len(calls['sdpa'])} times; expected once, for all heads at once on (B, nh, T, hs) tensors. It is "
                "the fused (flash) attention kernel that makes this stage fast."
            )
        if calls["softmax"]:
            raise CheckFailure(
                "CausalSelfAttention.forward still computes a softmax of its own: the (T, T) attention matrix is "
                "made by hand. Let F.scaled_dot_product_attention do scores, mask, softmax and @ v in one kernel."
            )
        call = calls["sdpa"][0]
        if call.get("is_causal") is not True or call.get("attn_mask") is not None:
            mask = "" if call.get("attn_mask") is None else " with an explicit attn_mask"
            raise CheckFailure(
                f"F.scaled_dot_product_attention was called with is_causal={call.get('is_causal')!r}{mask}. Pass "
                "is_causal=True and no attn_mask: the kernel then builds the causal mask itself and skips the "
                "future's tiles (a mask tensor forces a slower kernel)."
            )
        if call.get("scale") not in (None,) and not math.isclose(call["scale"], 1 / math.sqrt(4), rel_tol=1e-6):
            raise CheckFailure(
                f"F.scaled_dot_product_attention was called with scale={call['scale']}; leave it out: the default is "
                "1/sqrt(head size), the right one."
            )
        shape = call.get("query", {}).get("shape") if isinstance(call.get("query"), dict) else None
        if shape != (2, 2, 6, 4):
            raise CheckFailure(
                f"The query passed to F.scaled_dot_product_attention has shape {shape}, expected (B, nh, T, hs) = "
                "(2, 2, 6, 4): split the heads with view(B, T, nh, hs).transpose(1, 2) first."
            )
        expected_p = dropout if train else 0.0
        got_p = call.get("dropout_p", 0.0)
        if not isinstance(got_p, float | int) or not math.isclose(float(got_p), expected_p):
            raise CheckFailure(
                f"In {mode} mode with dropout={dropout}, dropout_p was {got_p!r}; expected {expected_p}. The kernel "
                "does not know the module's mode: pass dropout_p=self.dropout if self.training else 0.0."
            )
    fused_kernel_by_time(impl)


# Measured on a busy 2-core machine, one thread, CPU time, forward at T = 1024: the reference's
# F.scaled_dot_product_attention(is_causal=True) takes 0.21x-0.26x of the grader's (T, T) attention,
# SDPA with an explicit mask 0.36x, attention by hand 0.95x.
FUSED_MAX_RATIO = 0.6


def fused_kernel_by_time(impl):
    """What the calls the learner's process reports must show from outside: one forward at
    T = 1024 costs well under the (T, T) scores, mask and softmax that the grader computes with
    the same weights (MaskedAttention), timed by the grader on new inputs every run."""
    B, T, C, n_head = 1, 1024, 128, 4
    attn = new_attention(impl, C, n_head, T)
    masked = MaskedAttention(attn.state_dict(), n_head)
    result = measure_calls((impl, attn), (None, masked), lambda gen: (torch.randn(B, T, C, generator=gen),),
                           calls=2, repeats=5, what=f"CausalSelfAttention on x of shape ({B}, {T}, {C})")
    assert_speed_ratio(
        result, FUSED_MAX_RATIO, f"CausalSelfAttention's forward on x of shape ({B}, {T}, {C}), {n_head} heads, "
        "against the (T, T) attention computed by the grader with the same weights,",
        hint="The (T, T) attention matrix is still made somewhere: one F.scaled_dot_product_attention call with "
             "is_causal=True does scores, mask, softmax and @ v in one fused kernel, without it.")


@check("CausalSelfAttention's dropout: c_proj's output dropped in training, nothing in eval; n_head must divide "
       "n_embd (ValueError)", points=1)
def attention_dropout_and_errors(impl):
    x = torch.randn(4, 8, 16, generator=torch.Generator().manual_seed(3))
    attn = new_attention(impl, 16, 2, 8, dropout=0.5)
    got = attn(x)
    expected = masked_attention(x, attn.state_dict(), 2)
    expect_tensor(got, "CausalSelfAttention(x)", (4, 8, 16), torch.float32)
    dropped = (got == 0).float().mean().item()
    hint = ("In eval mode nothing may be dropped." if dropped < 0.2 else cause(
        f"{dropped:.0%} of the output is exactly 0 in eval mode: dropout is applied in eval mode too. "
        "F.dropout(y, p) drops whatever the mode (its training argument defaults to True); use "
        "self.resid_dropout = nn.Dropout(dropout), which model.eval() turns off."))
    assert_close(got, expected, "CausalSelfAttention(x) in eval mode with dropout=0.5", rtol=RTOL, atol=ATOL,
                 hint=hint)
    attn.train()
    torch.manual_seed(0)
    dropped = (attn(x) == 0).float().mean().item()
    if not 0.3 <= dropped <= 0.7:
        raise CheckFailure(
            f"In training mode with dropout=0.5, {dropped:.0%} of CausalSelfAttention's output is exactly 0; "
            "about 50% expected.\n"
            + cause("c_proj's output is not dropped out: return self.resid_dropout(self.c_proj(y)), as in stage 06 "
                    "(the kernel's dropout_p drops attention weights, not outputs).")
        )
    expect_raises(lambda: impl.module("train").CausalSelfAttention(10, 3, 8), ValueError,
                  "CausalSelfAttention(10, 3, 8) (n_head=3 does not divide n_embd=10)",
                  hint="As in stage 06, raise ValueError (not assert, which python -O skips) when "
                       "n_embd % n_head != 0.")


@check("CausalSelfAttention and FastGPT2 leave their inputs unchanged, even when x requires grad", points=1)
def inputs_unchanged(impl):
    gen = torch.Generator().manual_seed(4)
    assert_inputs_unchanged(impl, new_attention(impl, 12, 3, 8), torch.randn(2, 6, 12, generator=gen),
                            what="CausalSelfAttention(x)", names=("x",))
    model = fast_gpt2(impl, block_size=8, vocab_size=20, n_layer=1, n_head=2, n_embd=8)
    idx, targets = torch.randint(0, 20, (2, 6), generator=gen), torch.randint(0, 20, (2, 6), generator=gen)
    assert_inputs_unchanged(impl, model, idx, targets, what="FastGPT2(idx, targets)", names=("idx", "targets"))


@check("CausalSelfAttention and FastGPT2 follow the input's device and dtype (meta, float64)", points=1)
def follows_device_and_dtype(impl):
    assert_follows_device_and_dtype(impl, new_attention(impl, 12, 3, 8), torch.randn(2, 6, 12),
                                    what="CausalSelfAttention(x)")
    model = fast_gpt2(impl, block_size=8, vocab_size=20, n_layer=1, n_head=2, n_embd=8)
    idx = torch.randint(0, 20, (2, 6), generator=torch.Generator().manual_seed(5))
    assert_follows_device_and_dtype(impl, model, idx, idx, what="FastGPT2(idx, targets)")


@check("CausalSelfAttention stays finite and correct on large activations (x times 10 and 100)", points=1)
def attention_stable_on_large_inputs(impl):
    assert_stable(impl, new_attention(impl, 12, 3, 8), torch.randn(2, 6, 12, generator=torch.Generator().manual_seed(6)),
                  what="CausalSelfAttention(x)", rtol=1e-3, atol=1e-4,
                  hint="Let F.scaled_dot_product_attention compute the softmax: it subtracts each row's max first.")


# --- the padded vocabulary -----------------------------------------------------------------------


@check("padded_vocab_size rounds up to a multiple of 64 (50257 -> 50304)", points=1)
def padded_vocab_size_values(impl):
    pad = impl.module("train").padded_vocab_size
    cases = [((50257,), 50304), ((65,), 128), ((64,), 64), ((1,), 64), ((128,), 128), ((129,), 192),
             ((50257, 128), 50304), ((100, 7), 105), ((50304,), 50304)]
    for args, expected in cases:
        got = pad(*args)
        if type(got) is not int or got != expected:
            call = f"padded_vocab_size({', '.join(map(str, args))})"
            hint = ""
            if type(got) is int and got == expected + (args[1] if len(args) > 1 else 64):
                hint = "\n" + cause("a size that is already a multiple must stay as it is: round up, do not "
                                     "always add.")
            raise CheckFailure(f"{call} returned {got!r}, expected {expected}: the smallest multiple that is at "
                               f"least the vocabulary size.{hint}")


@check("FastGPT2 has padded, tied embedding and output tables, and flash attention in every block", points=2)
def fast_gpt2_structure(impl):
    V, C, L = 65, 16, 2
    model = fast_gpt2(impl, block_size=8, vocab_size=V, n_layer=L, n_head=2, n_embd=C)
    state = model.state_dict()
    for key in ("transformer.wte.weight", "lm_head.weight"):
        if key not in state:
            raise CheckFailure(f"FastGPT2 has no {key}: build it on stage 08's GPT2 (super().__init__(...)).")
        if tuple(state[key].shape) != (128, C):
            raise CheckFailure(
                f"With vocab_size={V}, FastGPT2's {key} has shape {tuple(state[key].shape)}, expected (128, {C}): "
                "the table is padded to padded_vocab_size(65) = 128 rows, so the big matmul of lm_head has a nice "
                "size. Build the GPT2 with a copy of the config whose vocab_size is padded."
            )
    if model.vocab_size != V:
        raise CheckFailure(f"FastGPT2.vocab_size is {model.vocab_size!r}; it should keep the real size, {V}.")
    if model.config.vocab_size != 128:
        raise CheckFailure(f"FastGPT2.config.vocab_size is {model.config.vocab_size!r}; expected the padded size, 128.")
    calls = impl.probe(attention_calls, model, torch.randint(0, V, (1, 5)))
    if len(calls["sdpa"]) != L or calls["softmax"]:
        raise CheckFailure(
            f"A forward of a {L}-layer FastGPT2 called F.scaled_dot_product_attention {len(calls['sdpa'])} times "
            f"and a softmax {calls['softmax']} times; expected {L} and 0. Replace each block's attention "
            "(block.attn) by this stage's CausalSelfAttention."
        )


@check("FastGPT2 keeps stage 08's init in its new attention layers", points=1)
def fast_gpt2_keeps_init(impl):
    L, C = 8, 64
    model = fast_gpt2(impl, block_size=8, vocab_size=50, n_layer=L, n_head=4, n_embd=C)
    state = model.state_dict()
    std = 0.02 / math.sqrt(2 * L)
    for name, expected in (("transformer.h.0.attn.c_proj.weight", std), ("transformer.h.0.attn.c_attn.weight", 0.02)):
        weight = torch.cat([state[name.replace(".0.", f".{i}.")].flatten() for i in range(L)])
        assert_weight_stats(
            weight, f"the {name.split('.', 3)[-1]} weights of all blocks", 0.0, expected, 2e-3, 0.1,
            hint="\n" + cause("a freshly made CausalSelfAttention has PyTorch's default init, not GPT-2's: copy the "
                             "old attention's weights into the new one (new.load_state_dict(block.attn.state_dict(), "
                             "strict=False))."),
        )


@check("FastGPT2's loss over the real tokens equals an unpadded GPT2's with the same weights", points=3)
@settings(max_examples=5)
@given(V=st.integers(2, 70), batch=st.integers(1, 3), T=st.integers(1, 8), seed=st.integers(0, 1000))
@example(V=65, batch=2, T=8, seed=0)
def fast_gpt2_loss_unchanged(impl, V, batch, T, seed):
    sizes = dict(block_size=8, vocab_size=V, n_layer=2, n_head=2, n_embd=8)
    model = fast_gpt2(impl, **sizes)
    padded = -(-V // 64) * 64
    gen = torch.Generator().manual_seed(seed)
    idx, targets = torch.randint(0, V, (batch, T), generator=gen), torch.randint(0, V, (batch, T), generator=gen)
    out = model(idx, targets)
    if type(out) is not tuple or len(out) != 2:
        raise CheckFailure(f"FastGPT2(idx, targets) should return (logits, loss), got a {type(out).__name__}.")
    logits, loss = out
    if isinstance(logits, torch.Tensor) and V != padded and tuple(logits.shape) == (batch, T, padded):
        raise CheckFailure(
            f"FastGPT2's logits have shape {tuple(logits.shape)}, expected {(batch, T, V)}.\n"
            + cause(f"forward returns the logits of the padded vocabulary ({padded} columns): return the logits of "
                    "the real tokens only, logits[..., :vocab_size].")
        )
    expect_tensor(logits, "FastGPT2's logits", (batch, T, V), torch.float32,
                  hint=f"Return the logits of the {V} real tokens only: slice off the padded columns, "
                       f"logits[..., :vocab_size] (the model computes {padded}).")
    expect_tensor(loss, "FastGPT2's loss", (), torch.float32)
    # The same weights in a plain GPT2 of the real vocabulary size: the first V rows of the tables.
    plain = impl.module("train").GPT2(gpt2_config(impl, **sizes))
    plain.eval()
    state = model.state_dict()
    own = plain.state_dict()
    plain.load_state_dict({k: (v[:V] if k in ("transformer.wte.weight", "lm_head.weight") else v)
                           for k, v in state.items() if k in own}, strict=False)
    plain_logits, plain_loss = plain(idx, targets)
    assert_close(logits, plain_logits, "FastGPT2's logits", rtol=RTOL, atol=ATOL,
                 hint="Same weights, same tokens: the padded model must give the real tokens the same logits.")
    hint = "The loss must be the cross-entropy of the returned (real-vocabulary) logits."
    if not torch.isclose(loss, plain_loss, rtol=1e-4, atol=1e-5):
        hint = cause(f"your logits of the real tokens are right, but your loss ({loss.item():.5f}) differs from "
                     f"the unpadded model's ({plain_loss.item():.5f}): it includes the padded logits. They are not "
                     "-inf, so the softmax gives the padded ids some probability and every real token less. Slice "
                     "the logits to [..., :vocab_size] before the loss.")
    assert_close(loss, plain_loss, "FastGPT2's loss", rtol=1e-4, atol=1e-5, hint=hint)
    assert_close(loss, F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1)), "FastGPT2's loss",
                 rtol=1e-4, atol=1e-5, hint="The loss is the mean cross-entropy of the returned logits over all B*T positions.")


@check("FastGPT2 never samples a padded token id", points=1)
def fast_gpt2_never_samples_padding(impl):
    V = 20
    model = fast_gpt2(impl, block_size=8, vocab_size=V, n_layer=1, n_head=2, n_embd=8)
    wte = model.state_dict()["transformer.wte.weight"]
    # Make the padded rows win every softmax they take part in (lm_head is tied to wte).
    rigged = wte.clone()
    rigged[V:] = 5.0
    impl.probe(set_parameter, model, "transformer.wte.weight", rigged)
    out = model.generate(torch.zeros(3, 1, dtype=torch.long), 12, temperature=1.0)
    expect_tensor(out, "generate(idx, 12)", (3, 13), torch.int64)
    if out.max() >= V:
        raise CheckFailure(
            f"FastGPT2.generate produced token id {int(out.max())}, but the vocabulary has only {V} real tokens "
            f"(ids {V}.. are padding).\n"
            + cause("forward returns the padded columns' logits too: it must return the logits of the real tokens "
                    "only, logits[..., :vocab_size].")
        )


@check("FastGPT2 compiles into one graph (torch.compile, fullgraph=True)", points=2)
def fast_gpt2_compiles(impl):
    model = fast_gpt2(impl, block_size=8, vocab_size=30, n_layer=1, n_head=2, n_embd=8)
    idx, targets = torch.randint(0, 30, (2, 8)), torch.randint(0, 30, (2, 8))
    result = impl.probe(compiled_loss, model, idx, targets)
    if not result["ok"]:
        raise CheckFailure(
            "torch.compile(model, fullgraph=True) could not trace FastGPT2's forward in one graph: "
            f"{result['error']}\nA graph break comes from Python that needs a tensor's value: .item(), .tolist(), "
            "if on a tensor, print of a tensor, an assert on token ids. Each break splits the compiled model and "
            "costs speed; keep forward to tensor operations."
        )
    assert_close(result["loss"], result["eager_loss"], "the compiled model's loss", rtol=1e-5, atol=1e-6)


@check("FastGPT2(config, vocab_multiple=m) pads the tables to a multiple of m", points=1)
def fast_gpt2_vocab_multiple(impl):
    V, C = 65, 8
    for multiple in (128, 8, 13):
        padded = -(-V // multiple) * multiple
        config = gpt2_config(impl, block_size=8, vocab_size=V, n_layer=1, n_head=2, n_embd=C)
        model = impl.module("train").FastGPT2(config, vocab_multiple=multiple)
        model.eval()
        shape = tuple(model.state_dict()["transformer.wte.weight"].shape)
        if shape != (padded, C):
            hint = ""
            if shape == (-(-V // 64) * 64, C):
                hint = "\n" + cause("FastGPT2 ignores vocab_multiple and pads to 64: pass it on, "
                                    "padded_vocab_size(config.vocab_size, vocab_multiple).")
            raise CheckFailure(f"FastGPT2(config with vocab_size={V}, vocab_multiple={multiple}) has a wte of shape "
                               f"{shape}, expected ({padded}, {C}): the vocabulary rounded up to a multiple of "
                               f"{multiple}.{hint}")
        if model.vocab_size != V or model.config.vocab_size != padded:
            raise CheckFailure(f"With vocab_multiple={multiple}, FastGPT2.vocab_size is {model.vocab_size!r} and "
                               f"FastGPT2.config.vocab_size {model.config.vocab_size!r}; expected the real size {V} "
                               f"and the padded size {padded}.")
        logits, _ = model(torch.zeros(1, 3, dtype=torch.long))
        expect_tensor(logits, f"FastGPT2's logits with vocab_multiple={multiple}", (1, 3, V), torch.float32,
                      hint="Slice off the padded columns: logits[..., :vocab_size].")


CONFIG_FIELDS = ("block_size", "vocab_size", "n_layer", "n_head", "n_embd", "dropout", "bias")


@check("FastGPT2 leaves the config it is given unchanged: two models from one config are alike", points=1)
def fast_gpt2_config_unchanged(impl):
    sizes = dict(block_size=8, vocab_size=65, n_layer=1, n_head=2, n_embd=8)
    config = gpt2_config(impl, **sizes)
    before = {name: getattr(config, name) for name in CONFIG_FIELDS}
    impl.module("train").FastGPT2(config)
    after = {name: getattr(config, name) for name in CONFIG_FIELDS}
    changed = {name: (before[name], after[name]) for name in CONFIG_FIELDS if before[name] != after[name]}
    if changed:
        shown = ", ".join(f"{name} from {old!r} to {new!r}" for name, (old, new) in changed.items())
        raise CheckFailure(
            f"FastGPT2(config) changed the config it was given: {shown}. The caller keeps using its config (the "
            "training script reads config.vocab_size, a second model is built from it).\n"
            + cause("FastGPT2 changed the config it was given: build the padded model from a copy, "
                    "dataclasses.replace(config, vocab_size=padded_vocab_size(...)).")
        )
    second = impl.module("train").FastGPT2(config)
    if second.vocab_size != 65 or second.config.vocab_size != 128:
        raise CheckFailure(f"A second FastGPT2 built from the same config has vocab_size {second.vocab_size!r} and "
                           f"config.vocab_size {second.config.vocab_size!r}; expected 65 and 128, as the first.")


@check("make_optimizer asks for fused AdamW on CUDA, with betas (0.9, 0.95)", points=1)
def make_optimizer_fused(impl):
    train = impl.module("train")
    model = fast_gpt2(impl, block_size=4, vocab_size=10, n_layer=1, n_head=1, n_embd=4)
    for device_type, fused in (("cuda", True), ("cpu", False)):
        try:
            optimizer = train.make_optimizer(model, 0.1, 3e-4, device_type)
        except LearnerError as exc:
            raise CheckFailure(f"make_optimizer(model, 0.1, 3e-4, {device_type!r}) failed: {exc.describe()}") from None
        defaults = optimizer.defaults
        if bool(defaults.get("fused")) != fused:
            why = ("make_optimizer does not pass device_type on to configure_optimizers, which asks for the fused "
                   "kernel on CUDA." if fused else "fused AdamW is asked for on a CPU: ask for it only when "
                   "device_type == 'cuda'.")
            raise CheckFailure(
                f"make_optimizer(..., device_type={device_type!r}) made an AdamW with fused={defaults.get('fused')!r}; "
                f"expected {fused}.\n" + cause(why)
            )
        if tuple(defaults.get("betas", ())) != (0.9, 0.95) or not math.isclose(defaults.get("lr", 0), 3e-4):
            raise CheckFailure(f"make_optimizer made an AdamW with lr={defaults.get('lr')} and betas="
                               f"{defaults.get('betas')}; expected lr=3e-4 and GPT-3's betas (0.9, 0.95).")
        decays = sorted(g["weight_decay"] for g in optimizer.param_groups)
        if decays != [0.0, 0.1]:
            raise CheckFailure(f"make_optimizer's groups have weight decays {decays}; expected stage 08's two groups, "
                               "[0.0, 0.1].")


@check("make_optimizer passes weight_decay and learning_rate on, with eps 1e-8", points=1)
def make_optimizer_hyperparameters(impl):
    make_optimizer = impl.module("train").make_optimizer
    model = fast_gpt2(impl, block_size=4, vocab_size=10, n_layer=1, n_head=1, n_embd=4)
    for weight_decay, learning_rate in ((0.05, 1e-3), (0.0, 2.5e-4)):
        call = f"make_optimizer(model, {weight_decay}, {learning_rate}, 'cpu')"
        optimizer = make_optimizer(model, weight_decay, learning_rate, "cpu")
        groups = optimizer.param_groups
        decays = sorted(g["weight_decay"] for g in groups)
        if decays != sorted([0.0, weight_decay]):
            raise CheckFailure(
                f"{call} made groups with weight decays {decays}; expected [0.0, {weight_decay}].\n"
                + cause("make_optimizer does not pass its weight_decay argument on: call "
                        "model.configure_optimizers(weight_decay, learning_rate, ...) with the arguments, not numbers.")
            )
        lrs = [g["lr"] for g in groups]
        if not all(math.isclose(lr, learning_rate) for lr in lrs):
            raise CheckFailure(f"{call} made groups with learning rates {lrs}; expected {learning_rate} in each: pass "
                               "learning_rate on to configure_optimizers.")
        eps = optimizer.defaults.get("eps")
        if not isinstance(eps, float) or not math.isclose(eps, 1e-8):
            raise CheckFailure(f"{call} made an AdamW with eps={eps!r}; expected 1e-8 (AdamW's default).")


# --- the learning-rate schedule ------------------------------------------------------------------


@check("get_lr warms up linearly: max_lr / warmup at step 0, max_lr at step warmup - 1", points=2)
@settings(max_examples=10)
@given(warmup=st.integers(1, 50), extra=st.integers(1, 100))
@example(warmup=10, extra=90)
def lr_warmup(impl, warmup, extra):
    get_lr = impl.module("train").get_lr
    max_lr, min_lr = 6e-4, 6e-5
    for step in sorted({0, warmup // 2, warmup - 1}):
        got = get_lr(step, warmup, warmup + extra, max_lr, min_lr)
        expected = max_lr * (step + 1) / warmup
        if not isinstance(got, float | int) or not math.isclose(got, expected, rel_tol=1e-9):
            hint = "During warmup, lr = max_lr * (step + 1) / warmup_steps."
            if isinstance(got, float | int) and math.isclose(got, max_lr * step / warmup, rel_tol=1e-9, abs_tol=1e-15):
                hint = cause("your warmup is off by one: it uses step / warmup_steps, so step 0 gets lr 0 and is "
                             "wasted, and max_lr is reached one step late. Use (step + 1) / warmup_steps.")
            raise CheckFailure(f"get_lr({step}, warmup_steps={warmup}, max_steps={warmup + extra}, max_lr={max_lr}, "
                               f"min_lr={min_lr}) returned {got!r}, expected {expected:.6g}.\n{hint}")


@check("get_lr decays by a cosine from max_lr to min_lr at max_steps, then stays at min_lr", points=2)
@settings(max_examples=10)
@given(warmup=st.integers(0, 30), decay=st.integers(2, 200))
@example(warmup=10, decay=90)
def lr_cosine(impl, warmup, decay):
    get_lr = impl.module("train").get_lr
    max_lr, min_lr, max_steps = 6e-4, 6e-5, warmup + decay
    middle = warmup + decay / 2
    points = [(warmup, max_lr, "at the end of warmup"), (max_steps, min_lr, "at max_steps"),
              (max_steps + 1, min_lr, "after max_steps"), (max_steps + 1000, min_lr, "long after max_steps")]
    if decay % 2 == 0:
        points.append((int(middle), (max_lr + min_lr) / 2, "halfway through the decay"))

    def cosine(step, over, floor):
        r = min(1.0, (step - warmup) / over)
        return floor + 0.5 * (1 + math.cos(math.pi * r)) * (max_lr - floor)

    for step, expected, where in points:
        got = get_lr(step, warmup, max_steps, max_lr, min_lr)
        if not isinstance(got, float | int) or not math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-12):
            hint = ("lr = min_lr + 0.5 * (1 + cos(pi * r)) * (max_lr - min_lr), with r = (step - warmup_steps) / "
                    "(max_steps - warmup_steps) going from 0 to 1; after max_steps, min_lr.")
            if isinstance(got, float | int) and step <= max_steps:
                if math.isclose(got, cosine(step, decay, 0.0), rel_tol=1e-6, abs_tol=1e-12):
                    hint = cause("your cosine decays to 0, not to min_lr: lr = min_lr + coeff * (max_lr - min_lr).")
                elif warmup and math.isclose(got, cosine(step, max_steps, min_lr), rel_tol=1e-6, abs_tol=1e-12):
                    hint = cause("your decay ratio divides by max_steps instead of (max_steps - warmup_steps), so the "
                                 "cosine has not finished at max_steps.")
            raise CheckFailure(f"get_lr({step}, warmup_steps={warmup}, max_steps={max_steps}, max_lr={max_lr}, "
                               f"min_lr={min_lr}) {where} returned {got!r}, expected {expected:.6g}.\n{hint}")
    previous = max_lr
    for step in range(warmup, max_steps + 2):
        got = get_lr(step, warmup, max_steps, max_lr, min_lr)
        if got > previous + 1e-15 or got < min_lr - 1e-15:
            raise CheckFailure(f"get_lr rises or drops below min_lr during the decay: step {step} gives {got!r} after "
                               f"{previous!r} (min_lr {min_lr}).")
        previous = got


def handout_lr(step, warmup_steps, max_steps, max_lr, min_lr, decay="cosine"):
    """The handout's schedule, written here from its formula; decay="linear" is the usual slip."""
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step > max_steps:
        return min_lr
    r = (step - warmup_steps) / (max_steps - warmup_steps)
    coeff = 0.5 * (1 + math.cos(math.pi * r)) if decay == "cosine" else 1 - r
    return min_lr + coeff * (max_lr - min_lr)


@check("get_lr follows the handout's formula at every step, for any max_lr and min_lr", points=1)
@settings(max_examples=8)
@given(warmup=st.integers(0, 20), decay=st.integers(1, 60), max_lr=st.floats(1e-5, 1.0),
       floor=st.sampled_from([0.0, 0.1, 0.5, 1.0]))
@example(warmup=4, decay=12, max_lr=3e-3, floor=0.1)
def lr_every_step(impl, warmup, decay, max_lr, floor):
    get_lr = impl.module("train").get_lr
    max_steps, min_lr = warmup + decay, max_lr * floor

    def close(got, expected):
        return isinstance(got, float | int) and math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-12 * max_lr)

    for step in range(max_steps + 3):
        got = get_lr(step, warmup, max_steps, max_lr, min_lr)
        expected = handout_lr(step, warmup, max_steps, max_lr, min_lr)
        if close(got, expected):
            continue
        hint = ("lr = max_lr * (step + 1) / warmup_steps while step < warmup_steps, then min_lr + 0.5 * (1 + "
                "cos(pi * r)) * (max_lr - min_lr) with r = (step - warmup_steps) / (max_steps - warmup_steps), then "
                "min_lr after max_steps.")
        if step <= max_steps and close(got, handout_lr(step, warmup, max_steps, max_lr, min_lr, decay="linear")):
            hint = cause("Your decay is linear, max_lr - r * (max_lr - min_lr): it meets the cosine at the start, "
                         "the middle and the end only. Use coeff = 0.5 * (1 + math.cos(math.pi * r)).")
        raise CheckFailure(f"get_lr({step}, warmup_steps={warmup}, max_steps={max_steps}, max_lr={max_lr:.6g}, "
                           f"min_lr={min_lr:.6g}) returned {got!r}, expected {expected:.9g}.\n{hint}")


# --- the training step ---------------------------------------------------------------------------


@check("gradient accumulation: k micro-batches give the gradients of one batch k times larger", points=3)
@settings(max_examples=6)
@given(k=st.integers(1, 4), batch=st.integers(1, 3), T=st.integers(1, 5), seed=st.integers(0, 1000))
@example(k=4, batch=2, T=3, seed=0)
def accumulation_equals_big_batch(impl, k, batch, T, seed):
    batches = random_batches(k, batch, T, 11, seed)
    result = train_steps(impl, TinyLM(seed=seed), [batches], max_norm=1e9, amp_dtype=None)
    big_loss, expected = big_batch_gradients(batches, seed=seed)
    got = result["steps"][0]["grads"]
    first = next(iter(expected))
    ratio = (got[first].double().norm() / expected[first].double().norm()).item() if got.get(first) is not None else 0
    hint = "Divide each micro-batch's loss by k = len(batches) before backward; zero the gradients only once per step."
    if k > 1 and math.isclose(ratio, k, rel_tol=1e-3):
        hint = cause(f"Your gradients are {k} times too large: each micro-batch's loss is a mean over its own tokens, "
                     "and backward adds up the k gradients. Divide each loss by k (loss = loss / len(batches)) before "
                     "backward.")
    elif k > 1:
        _, last_only = big_batch_gradients(batches[-1:], seed=seed)
        if all(torch.allclose(got[n] * k, last_only[n], rtol=1e-4, atol=1e-6) for n in last_only if got.get(n) is not None):
            hint = cause("Only the last micro-batch's gradients reached the optimizer: zero_grad is called inside the "
                         "accumulation loop, wiping the earlier ones. Zero the gradients once per step, after "
                         "optimizer.step() (or before the loop).")
    compare_grads(got, expected, f"train_step with k={k} micro-batches", hint)
    loss, _ = result["returned"][0]
    if not math.isclose(loss, big_loss, rel_tol=1e-4, abs_tol=1e-6):
        raise CheckFailure(f"train_step returned loss {loss:.6g}; the mean loss over the {k} micro-batches is "
                           f"{big_loss:.6g}. Return the sum of the divided losses (their mean), as a float.")
    if result["calls"] and any(c["batch"] != batch for c in result["calls"]) or len(result["calls"]) != k:
        raise CheckFailure(f"train_step made {len(result['calls'])} forward calls; expected one per micro-batch ({k}).")


@check("each step starts from zero gradients (zero_grad once per step)", points=2)
def zero_grad_each_step(impl):
    steps = [random_batches(2, 2, 4, 11, seed) for seed in (1, 2)]
    result = train_steps(impl, TinyLM(seed=3), steps, max_norm=1e9, amp_dtype=None)
    # The first step moves the weights by APPLIED_LR times its gradients: the second step's are taken there.
    _, first = big_batch_gradients(steps[0], seed=3)
    moved = {name: p.detach() - APPLIED_LR * first[name] for name, p in TinyLM(seed=3).named_parameters()}
    _, expected = big_batch_gradients(steps[1], seed=3, weights=moved)
    compare_grads(result["steps"][1]["grads"], expected, "the second train_step",
                  cause("The gradients of the first step were still there: backward adds to .grad. Call "
                        "optimizer.zero_grad(set_to_none=True) once per step, after optimizer.step()."))


@check("clip_grad_norm_ before the step: gradients scaled to max_norm, the norm before clipping returned", points=2)
def clipping(impl):
    batches = random_batches(2, 2, 4, 11, 5)
    _, raw = big_batch_gradients(batches, seed=5)
    raw_norm = total_norm(raw)
    max_norm = raw_norm / 4
    result = train_steps(impl, TinyLM(seed=5), [batches], max_norm=max_norm, amp_dtype=None)
    seen = result["steps"][0]["grads"]
    seen_norm = total_norm(seen)
    if seen_norm > max_norm * 1.01:
        raise CheckFailure(
            f"optimizer.step() saw gradients of global norm {seen_norm:.4g}, above max_norm={max_norm:.4g}: they "
            "were not clipped before the step. Call torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm) "
            "after the accumulation loop and BEFORE optimizer.step() (clipping after the step changes nothing)."
        )
    compare_grads(seen, {n: g * (max_norm / raw_norm) for n, g in raw.items()}, "the clipped gradients",
                  "clip_grad_norm_ scales all gradients together by max_norm / (their global norm), keeping their "
                  "direction; clip_grad_value_ clamps each number and changes the direction.")
    _, norm = result["returned"][0]
    if not math.isclose(norm, raw_norm, rel_tol=1e-4):
        hint = ""
        if math.isclose(norm, max_norm, rel_tol=1e-3):
            hint = " That is the norm after clipping (max_norm); return the value clip_grad_norm_ returns, the norm before."
        raise CheckFailure(f"train_step returned norm {norm:.6g}; the gradients' global norm before clipping was "
                           f"{raw_norm:.6g}.{hint}")


@check("bf16 autocast wraps the forward and loss only, not backward or the optimizer step", points=3)
def autocast_forward_only(impl):
    batches = random_batches(2, 2, 3, 11, 7)
    result = train_steps(impl, TinyLM(seed=7), [batches], max_norm=1e9, amp_dtype=torch.bfloat16)
    forward = [c["autocast"] for c in result["calls"]]
    if not forward or not all(forward):
        raise CheckFailure(
            f"With amp_dtype=torch.bfloat16, autocast was on in {sum(forward)} of {len(forward)} forward calls; "
            "expected all: wrap model(x, y) in torch.autocast(device_type=x.device.type, dtype=amp_dtype)."
        )
    dtypes = {c["autocast_dtype"] for c in result["calls"]}
    if dtypes != {"torch.bfloat16"}:
        raise CheckFailure(f"The forward ran under autocast with dtype {sorted(map(str, dtypes))}; expected torch.bfloat16.")
    if any(result["backward_autocast"]):
        raise CheckFailure(
            "loss.backward() ran inside the autocast region. Autocast is for the forward pass and the loss only; "
            "backward already runs each operation in the dtype its forward used. Leave the `with torch.autocast` "
            "block before calling backward."
        )
    if result["steps"][0]["autocast"]:
        raise CheckFailure(
            "optimizer.step() ran inside the autocast region. The weights and the optimizer stay float32: end the "
            "`with torch.autocast` block after the loss."
        )
    plain = train_steps(impl, TinyLM(seed=7), [batches], max_norm=1e9, amp_dtype=None)
    if any(c["autocast"] for c in plain["calls"]):
        raise CheckFailure("With amp_dtype=None, the forward still ran under autocast; None means full precision "
                           "(torch.autocast(..., enabled=False), or no autocast at all).")
    expect_loss_of(result, batches, seed=7, amp_dtype=torch.bfloat16, call=", amp_dtype=torch.bfloat16")
    expect_loss_of(plain, batches, seed=7, amp_dtype=None, call=", amp_dtype=None")


def expect_loss_of(run, batches, seed: int, amp_dtype, call: str) -> None:
    """What the records say must show in the loss train_step returned (`run`'s one step): the mean
    loss of TinyLM(seed) over `batches` under autocast to amp_dtype (None: none), computed here.
    TinyLM's head in half precision moves the loss by 1e-4 to 1e-3, far above float32's rounding."""
    returned, expected = run["returned"][0][0], tiny_lm_loss(batches, seed=seed, amp_dtype=amp_dtype)
    if math.isclose(returned, expected, rel_tol=1e-5, abs_tol=1e-6):
        return

    def under(dtype) -> str:
        return f"under {str(dtype).removeprefix('torch.')} autocast" if dtype else "in full precision"

    instead = next((d for d in (None, torch.bfloat16, torch.float16) if d != amp_dtype and math.isclose(
        returned, tiny_lm_loss(batches, seed=seed, amp_dtype=d), rel_tol=1e-5, abs_tol=1e-6)), False)
    why = f" (it is the loss {under(instead)})" if instead is not False else ""
    raise CheckFailure(
        f"train_step(model, optimizer, batches{call}) returned the loss {returned:.7g}; the mean of the micro-batch "
        f"losses {under(amp_dtype)} is {expected:.7g}{why}.\n"
        + cause("Your forward does not run under autocast to amp_dtype: run model(x, y) inside "
                "torch.autocast(device_type=x.device.type, dtype=amp_dtype) when amp_dtype is given (its default is "
                "torch.bfloat16), and without autocast when it is None.")
    )


def tiny_lm_loss(batches, seed: int, amp_dtype) -> float:
    """The mean loss of TinyLM(seed) over `batches`, under autocast to amp_dtype (None: none), computed here."""
    model, losses = TinyLM(seed=seed), []
    for x, y in batches:
        with torch.autocast(x.device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            losses.append(model(x, y)[1].float())
    return torch.stack(losses).mean().item()


@check("under DDP (a model with no_sync), every micro-batch but the last skips the all-reduce", points=2)
def no_sync_all_but_last(impl):
    batches = random_batches(3, 2, 3, 11, 9)
    result = train_steps(impl, TinyDDP(seed=9), [batches], max_norm=1e9, amp_dtype=None)
    syncs = [c["sync"] for c in result["calls"]]
    if syncs != [False, False, True]:
        shown = ", ".join("all-reduce" if s else "no_sync" for s in syncs)
        if syncs and not any(syncs):
            hint = ("The last micro-batch also ran inside no_sync, so the gradients are never averaged across "
                    "processes: each GPU would train its own model.")
        elif all(syncs):
            hint = ("No micro-batch ran inside model.no_sync(), so DDP all-reduces the gradients after every "
                    "backward: k - 1 wasted all-reduces per step.")
        else:
            hint = "Only the last micro-batch may all-reduce."
        raise CheckFailure(f"With 3 micro-batches on a DDP model, the forward calls ran as: {shown}; expected no_sync, "
                           f"no_sync, all-reduce. {hint} Run forward and backward of micro-batch i inside "
                           "model.no_sync() when i < k - 1 (DDP decides at the forward).")


@check("train_step sets the learning rate on every param group before the step", points=1)
def lr_set_before_step(impl):
    steps = [random_batches(1, 2, 3, 11, 11), random_batches(1, 2, 3, 11, 12)]
    result = train_steps(impl, TinyLM(seed=11), steps, max_norm=1e9, amp_dtype=None, lr=0.123)
    lrs = [s["lrs"] for s in result["steps"]]
    if any(not math.isclose(lr, 0.123) for step in lrs for lr in step):
        raise CheckFailure(
            f"train_step(..., lr=0.123) called optimizer.step() with the param groups' learning rates at {lrs} "
            "(one list per step). Set group['lr'] = lr for every group in optimizer.param_groups BEFORE "
            "optimizer.step(); set after it, each step would use the previous step's rate."
        )


@check("train_step autocasts to the amp_dtype given (float16 too); by default to bfloat16, clipping at 1.0",
       points=1)
def train_step_options(impl):
    batches = random_batches(1, 1, 2, 11, 1)  # one token pair whose gradient norm is about 1.8
    half = train_steps(impl, TinyLM(seed=1), [batches], max_norm=1e9, amp_dtype=torch.float16)
    dtypes = sorted({str(c["autocast_dtype"]) for c in half["calls"]})
    if dtypes != ["torch.float16"]:
        raise CheckFailure(
            f"train_step(..., amp_dtype=torch.float16) ran the forward under autocast dtype {dtypes} "
            "(None: no autocast); expected torch.float16.\n"
            + cause("Your autocast ignores amp_dtype: torch.autocast(device_type, dtype=amp_dtype), not a "
                    "fixed torch.bfloat16.")
        )
    _, raw = big_batch_gradients(batches, seed=1)
    default = train_steps(impl, TinyLM(seed=1), [batches])
    dtypes = sorted({str(c["autocast_dtype"]) for c in default["calls"]})
    if dtypes != ["torch.bfloat16"]:
        raise CheckFailure(f"train_step(model, optimizer, batches), with amp_dtype left at its default, ran the "
                           f"forward under autocast dtype {dtypes} (None: no autocast); expected torch.bfloat16, the "
                           "default of amp_dtype.")
    expect_loss_of(half, batches, seed=1, amp_dtype=torch.float16, call=", amp_dtype=torch.float16")
    expect_loss_of(default, batches, seed=1, amp_dtype=torch.bfloat16, call="")
    seen = total_norm(default["steps"][0]["grads"])
    if not math.isclose(seen, 1.0, rel_tol=1e-2):
        raise CheckFailure(f"train_step(model, optimizer, batches), with max_norm left at its default, gave the "
                           f"optimizer gradients of norm {seen:.4g} (before clipping about {total_norm(raw):.3g}); "
                           "expected 1.0: max_norm defaults to 1.0.")


@check("ddp_env reads RANK, LOCAL_RANK and WORLD_SIZE, and defaults to one process", points=1)
def ddp_env_reads_environment(impl):
    ddp_env = impl.module("train").ddp_env
    for env, expected in (({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"}, (3, 1, 4)),
                          ({"RANK": None, "LOCAL_RANK": None, "WORLD_SIZE": None}, (0, 0, 1))):
        got = impl.probe(with_environment, ddp_env, env)
        if type(got) is not tuple or got != expected or not all(type(v) is int for v in got):
            shown = ", ".join(f"{k}={v}" for k, v in env.items() if v is not None) or "none of the variables set"
            raise CheckFailure(f"ddp_env() with {shown} returned {got!r}, expected {expected} as a tuple of ints "
                               "(rank, local_rank, world_size). Read os.environ with defaults 0, 0, 1.")


# --- on a CUDA GPU, in bf16: each speed-up pays ---------------------------------------------------
# Without CUDA these report "skipped: needs CUDA" and count neither way. Each is split in two:
# a function that measures and returns a SpeedVerdict, whose default arguments are the GPU
# setting, and the check, which enforces that verdict on CUDA. GPU_CHECKS (at the end) gives
# each function tiny CPU arguments, which only the project's tests (tests/test_gpu_smoke.py)
# and `python -m grader gpucheck --smoke` pass: nothing a learner runs reaches them. The
# thresholds, and the figures they rest on: benchmarks/GPU.md.

TF32_MIN_SPEEDUP = 1.5  # benchmarks/GPU.md, "TF32"
FLASH_MIN_SPEEDUP = 1.5  # benchmarks/GPU.md, "Flash attention"
COMPILE_MIN_SPEEDUP = 1.1  # benchmarks/GPU.md, "torch.compile"
# TF32 tensor cores, fast bf16 and the flash kernels came with Ampere: on an older GPU these
# speed-ups cannot show, and the checks skip.
AMPERE = (8, 0)
GPT2_SMALL = dict(block_size=1024, vocab_size=50257, n_layer=12, n_head=12, n_embd=768)
GPT2_4_LAYERS = dict(GPT2_SMALL, n_layer=4)


class MaskedAttention(torch.nn.Module):
    """Stage 06's attention ((T, T) scores, -inf mask, softmax, @ v) with the weights in `state`,
    computed by the grader: the baseline flash attention is timed against."""

    def __init__(self, state: dict, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.names = {}
        for key, value in state.items():
            if key.startswith(("c_attn.", "c_proj.")):
                self.names[key] = key.replace(".", "_")
                self.register_parameter(self.names[key], torch.nn.Parameter(value.detach().float().clone()))

    def forward(self, x):
        return masked_attention(x, {key: getattr(self, name) for key, name in self.names.items()}, self.n_head)


def tf32_verdict(impl, device="cuda", n=4096, times=5, repeats=10):
    """`times` (n, n) float32 matmuls after the learner's configure_tf32, against full precision."""
    configure = impl.module("train").configure_tf32
    # New matrices every run (a secret seed), and the learner's products must be right: in TF32
    # each entry of an (n, n) product of unit normals is off by about 1e-3 x sqrt(n) at most.
    result = measure_ratio(lambda seed: impl.probe(float32_matmuls, configure, n, times, device, seed),
                           lambda seed: float32_matmuls(None, n, times, device, seed), repeats=repeats, warmup=1,
                           device=device, inputs=seed_of,
                           agree=timed_answers_agree(f"a float32 matmul of {n} x {n} after configure_tf32()",
                                                     rtol=1e-2, atol=1e-2 * n**0.5))
    return SpeedVerdict(
        result, 1 / TF32_MIN_SPEEDUP,
        f"{times} float32 matmuls of {n} x {n} took {result.learner_seconds * 1e3:.2f} ms after configure_tf32() and "
        f"{result.reference_seconds * 1e3:.2f} ms in full precision ({1 / result.ratio:.2f}x faster; at least "
        f"{TF32_MIN_SPEEDUP:g}x expected on an Ampere or newer GPU). configure_tf32 should call "
        "torch.set_float32_matmul_precision('high').",
    )


def flash_verdict(impl, device="cuda", batch=8, T=1024, n_embd=768, n_head=12, repeats=10):
    """Forward + backward of the learner's CausalSelfAttention in bf16, against stage 06's masked
    attention with the same weights, computed by the grader."""
    attn = impl.module("train").CausalSelfAttention(n_embd, n_head, T)
    state = attn.state_dict()
    if not isinstance(state, dict) or not {"c_attn.weight", "c_proj.weight"} <= set(state):
        raise CheckFailure("CausalSelfAttention has no c_attn.weight and c_proj.weight: keep stage 06's c_attn and "
                           "c_proj, so that its speed can be compared with stage 06's attention.")
    masked = MaskedAttention(state, n_head)
    # A new x every run (a secret seed); the outputs must agree within bf16's precision.
    result = measure_ratio(lambda seed: impl.probe(attention_step, attn, batch, T, n_embd, device, seed),
                           lambda seed: attention_step(masked, batch, T, n_embd, device, seed),
                           repeats=repeats, warmup=1, device=device, inputs=seed_of,
                           agree=timed_answers_agree("CausalSelfAttention in bf16", rtol=5e-2, atol=5e-2))
    return SpeedVerdict(
        result, 1 / FLASH_MIN_SPEEDUP,
        f"Forward + backward of your CausalSelfAttention (B={batch}, T={T}, C={n_embd}, {n_head} heads, bf16) took "
        f"{result.learner_seconds * 1e3:.2f} ms, stage 06's masked attention with the same weights "
        f"{result.reference_seconds * 1e3:.2f} ms: {1 / result.ratio:.2f}x faster, at least {FLASH_MIN_SPEEDUP:g}x "
        "expected. Call F.scaled_dot_product_attention with is_causal=True and no attn_mask, on (B, nh, T, hs) "
        "tensors, so that PyTorch picks the flash kernel.",
    )


def compile_verdict(impl, device="cuda", sizes=GPT2_4_LAYERS, batch=8, T=1024, repeats=7, backend="inductor"):
    """The learner's training step with torch.compile, against the same step eager."""
    train = impl.module("train")
    compiled = impl.probe(make_step_trainer, train, dict(sizes), batch, T, compile=True, device=device, backend=backend)
    eager = impl.probe(make_step_trainer, train, dict(sizes), batch, T, compile=False, device=device)
    result = measure_ratio(compiled.step, eager.step, repeats=repeats, warmup=1, device=device,
                           inputs=lambda gen: fresh_batches(gen, sizes["vocab_size"], batch, T))
    return speed_verdict(
        result, 1 / COMPILE_MIN_SPEEDUP,
        f"Your compiled training step ({sizes['n_layer']}-layer GPT-2, B={batch}, T={T}, bf16), against the same "
        "step eager,",
        hint="torch.compile should fuse the elementwise work (GELU, LayerNorm, residual adds, dropout). A graph "
             "break in FastGPT2.forward (see the fullgraph check), or code that torch.compile is told to skip, "
             "leaves the model eager.",
    )


@check("on a GPU: TF32 makes float32 matmuls at least 1.5x faster", points=1)
def gpu_tf32_pays(impl):
    needs_cuda(AMPERE, "Ampere or newer")
    tf32_verdict(impl).enforce()


@check("on a GPU: flash attention is at least 1.5x faster than the masked (T, T) attention", points=1)
def gpu_flash_attention_pays(impl):
    needs_cuda(AMPERE, "Ampere or newer")
    flash_verdict(impl).enforce()


@check("on a GPU: torch.compile makes the training step at least 1.1x faster", points=1)
def gpu_compile_pays(impl):
    needs_cuda(AMPERE, "Ampere or newer")
    compile_verdict(impl).enforce()


# check id -> (the function that measures it, its arguments for a CPU smoke run: tiny, float32
# matmuls and bf16 autocast on the CPU, the same code path, thresholds not applied; torch.compile
# traces with aot_eager there, see grader.probes.make_step_trainer).
TINY_GPT2 = dict(block_size=16, vocab_size=65, n_layer=1, n_head=2, n_embd=16)
GPU_CHECKS = {
    "gpu_tf32_pays": (tf32_verdict, dict(device="cpu", n=256, times=4, repeats=3)),
    "gpu_flash_attention_pays": (flash_verdict, dict(device="cpu", batch=2, T=64, n_embd=32, n_head=4, repeats=3)),
    "gpu_compile_pays": (compile_verdict, dict(device="cpu", sizes=TINY_GPT2, batch=2, T=16, repeats=3,
                                               backend="aot_eager")),
}
