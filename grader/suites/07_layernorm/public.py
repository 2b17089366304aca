"""Stage 07, public checks: LayerNorm from scratch, the MLP, the pre-norm block and the whole GPT.

Oracles: torch.nn.functional.layer_norm for LayerNorm; for the MLP, the block and the GPT,
the same computation rebuilt from the learner's own weights or sub-modules, so each part
is judged on its own wiring. When a value is wrong, the likely bugs are computed too, and
the message names the one that matches.
"""
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
    assert_gradients_reach,
    gradients_of,
    assert_init_loss,
    assert_inputs_unchanged,
    assert_stable,
    dependency_map,
    expect_tensor,
    greedy_continuation,
    likely_bug,
    model_outputs,
    perturb_token,
)
from grader.handle import LearnerError
from grader.probes import set_parameter
from grader.strategies import GPT_EDGE_SIZES, gpt_sizes, split_sizes

# float32 results computed in a different order than the oracle's: a few ulps of O(1) values.
RTOL, ATOL = 1e-4, 1e-5


# --- helpers -------------------------------------------------------------------------------------


def layernorm_bugs(x, weight, bias, eps):
    """What the usual LayerNorm bugs return for input x, as (hint, output) pairs."""

    def finish(x_hat):
        out = x_hat * weight
        return out + bias if bias is not None else out

    def over(dims, unbiased=False, eps_outside=False, no_sqrt=False):
        mean = x.mean(dim=dims, keepdim=True)
        var = x.var(dim=dims, keepdim=True, unbiased=unbiased)
        if no_sqrt:
            return finish((x - mean) / (var + eps))
        return finish((x - mean) / (var.sqrt() + eps) if eps_outside else (x - mean) / (var + eps).sqrt())

    per_token = "LayerNorm normalizes each token over its own features: mean and var over dim=-1."
    yield ("Your LayerNorm takes its mean and variance over the batch dimension (dim=0), like BatchNorm "
           "does. " + per_token, over(0))
    if x.dim() == 3:
        yield "Your LayerNorm takes its statistics over the time dimension (dim=1). " + per_token, over(1)
        yield ("Your LayerNorm takes its statistics over the batch and time dimensions, like BatchNorm "
               "does. " + per_token, over((0, 1)))
    yield ("Your LayerNorm takes its statistics over the whole tensor. " + per_token,
           over(tuple(range(x.dim()))))
    yield ("Your LayerNorm uses the unbiased variance (dividing by C - 1, torch.var's default, or torch.std). "
           "LayerNorm uses the biased variance: x.var(dim=-1, keepdim=True, unbiased=False).",
           over(-1, unbiased=True))
    yield ("Your LayerNorm adds eps outside the square root: (x - mean) / (sqrt(var) + eps). "
           "It belongs inside: (x - mean) / sqrt(var + eps).", over(-1, eps_outside=True))
    yield ("Your LayerNorm divides by the variance instead of the standard deviation: take the square "
           "root, (x - mean) / sqrt(var + eps).", over(-1, no_sqrt=True))
    yield ("Your LayerNorm ignores the eps it was given (it uses 1e-5 or none). Keep the constructor's "
           "eps and use it in forward.", F.layer_norm(x, (x.shape[-1],), weight, bias, 1e-5))
    yield ("Your LayerNorm ignores its weight: multiply the normalized x by self.weight.",
           F.layer_norm(x, (x.shape[-1],), None, bias, eps))
    if bias is not None:
        yield ("Your LayerNorm ignores its bias: add self.bias after multiplying by the weight.",
               F.layer_norm(x, (x.shape[-1],), weight, None, eps))


def check_layernorm(ln, x, weight, bias, eps, name):
    """The learner's LayerNorm on x against F.layer_norm; the message names the likely bug."""
    got = ln(x)
    expect_tensor(got, name, tuple(x.shape), torch.float32, hint="LayerNorm returns a tensor shaped like its input.")
    expected = F.layer_norm(x, (x.shape[-1],), weight, bias, eps)
    hint = likely_bug(got, expected, layernorm_bugs(x, weight, bias, eps),
                      "Expected (x - mean) / sqrt(var + eps) * weight + bias, with mean and the biased var over dim=-1.")
    assert_close(got, expected, name, rtol=RTOL, atol=ATOL, hint=hint)


def new_gpt(impl, *, block_size, vocab_size, n_layer, n_head, n_embd, dropout=0.0, bias=True, train=False):
    gpt = impl.module("gpt")
    config = gpt.GPTConfig(block_size=block_size, vocab_size=vocab_size, n_layer=n_layer, n_head=n_head,
                           n_embd=n_embd, dropout=dropout, bias=bias)
    model = gpt.GPT(config)
    model.train() if train else model.eval()
    return model




def forward(model, idx, targets=None, what="model(idx)"):
    """(logits, loss) from the learner's GPT, checked to be a pair with (B, T, V) float32 logits."""
    return model_outputs(model, idx, *(() if targets is None else (targets,)), what=what,
                         hint="Flatten only for the loss: return the logits as (B, T, vocab_size).")


def logits_of(model, idx):
    return forward(model, idx)[0]


def block_of(model, i):
    return getattr(model.transformer.h, str(i))  # nn.ModuleList names its children "0", "1", ...


# --- LayerNorm -----------------------------------------------------------------------------------


@check("LayerNorm equals torch's layer_norm, with and without bias", points=3)
@settings(max_examples=15)
@given(
    batch=st.integers(1, 3), T=st.integers(1, 5), C=st.integers(1, 16), eps=st.sampled_from([1e-5, 1e-3, 0.1]),
    bias=st.booleans(), seed=st.integers(0, 1000),
)
def layernorm_matches_torch(impl, batch, T, C, eps, bias, seed):
    gen = torch.Generator().manual_seed(seed)
    ln = impl.module("gpt").LayerNorm(C, eps=eps, bias=bias)
    weight = 1 + 0.5 * torch.randn(C, generator=gen)
    b = torch.randn(C, generator=gen) if bias else None
    impl.probe(set_parameter, ln, "weight", weight)
    if bias:
        impl.probe(set_parameter, ln, "bias", b)
    x = 2 + 3 * torch.randn(batch, T, C, generator=gen)
    check_layernorm(ln, x, weight, b, eps, f"LayerNorm({C}, eps={eps}, bias={bias})(x)")


@check("LayerNorm normalizes each token over its own features (not over the batch)", points=2)
def layernorm_each_token(impl):
    ln = impl.module("gpt").LayerNorm(8)
    # Tokens with very different offsets and scales: each must come out with mean 0, variance 1.
    x = torch.randn(4, 6, 8) * torch.linspace(0.5, 4, 6).view(1, 6, 1) + torch.linspace(-5, 5, 4).view(4, 1, 1)
    check_layernorm(ln, x, torch.ones(8), torch.zeros(8), 1e-5, "LayerNorm(8)(x)")
    alone = ln(x[2:3])
    assert_close(alone, ln(x)[2:3], "LayerNorm of batch item 2 on its own", rtol=RTOL, atol=ATOL,
                 hint="A token's output changed when the other items of the batch changed: that is BatchNorm, "
                      "not LayerNorm. Normalize each token over its own features (dim=-1).")


@check("LayerNorm uses the biased variance (divides by C)", points=1)
def layernorm_biased_variance(impl):
    ln = impl.module("gpt").LayerNorm(3)
    x = torch.tensor([[[1.0, 2.0, 6.0], [-1.0, 0.0, 4.0]]])  # few features: C vs C - 1 differ by 22%
    check_layernorm(ln, x, torch.ones(3), torch.zeros(3), 1e-5, "LayerNorm(3)(x)")


@check("LayerNorm adds eps inside the square root, and uses the eps it is given", points=1)
def layernorm_eps_inside_sqrt(impl):
    ln = impl.module("gpt").LayerNorm(6, eps=0.5)
    x = 0.3 * torch.randn(2, 3, 6)  # variance well below eps: where eps goes changes everything
    check_layernorm(ln, x, torch.ones(6), torch.zeros(6), 0.5, "LayerNorm(6, eps=0.5)(x)")


@check("LayerNorm stays accurate for inputs far from zero", points=1)
def layernorm_far_from_zero(impl):
    ln = impl.module("gpt").LayerNorm(64)
    x = 300 + torch.randn(2, 4, 64)
    got = ln(x)
    expect_tensor(got, "LayerNorm(64)(x)", (2, 4, 64), torch.float32)
    expected = F.layer_norm(x, (64,), eps=1e-5)
    one_pass = (x * x).mean(-1, keepdim=True) - x.mean(-1, keepdim=True) ** 2
    cancels = (
        "For inputs near 300 with spread 1, the variance as E[x^2] - E[x]^2 subtracts two numbers near 90000 "
        "that agree in all but the last digits float32 keeps (here that gives "
        f"{one_pass.min().item():.3g} to {one_pass.max().item():.3g} instead of about 1): the digits cancel. "
        "Subtract the mean first, then average the squares: ((x - mean) ** 2).mean(-1), or "
        "x.var(dim=-1, unbiased=False)."
    )
    hint = likely_bug(got, expected, layernorm_bugs(x, torch.ones(64), torch.zeros(64), 1e-5), cancels, 1e-3, 1e-3)
    assert_close(got, expected, "LayerNorm(64)(300 + randn)", rtol=1e-3, atol=1e-3, hint=hint)


@check("LayerNorm's weight and bias are trainable parameters (ones and zeros; no bias when bias=False)", points=2)
def layernorm_parameters(impl):
    gpt = impl.module("gpt")
    ln = gpt.LayerNorm(5)
    grads = gradients_of(impl, ln, torch.randn(2, 3, 5) * torch.arange(1.0, 6.0), what="LayerNorm(5)")
    for name in ("weight", "bias"):
        if name not in grads:
            raise CheckFailure(
                f"LayerNorm(5) has no parameter named '{name}' (its parameters: {sorted(grads) or 'none'}). "
                f"Wrap it in nn.Parameter (self.{name} = nn.Parameter(...)), so that the optimizer trains it and "
                "it is saved in the state_dict."
            )
    state = ln.state_dict()
    for name, value in (("weight", torch.ones(5)), ("bias", torch.zeros(5))):
        assert_close(state[name], value, f"LayerNorm(5).{name} at initialization", rtol=0, atol=0,
                     hint="The gain starts at ones and the bias at zeros, so a fresh LayerNorm only normalizes.")
    assert_gradients_reach(grads, "LayerNorm(5)")
    no_bias = gpt.LayerNorm(5, bias=False)
    keys = sorted(no_bias.state_dict())
    if keys != ["weight"] or no_bias.bias is not None:
        raise CheckFailure(
            f"LayerNorm(5, bias=False) has state_dict keys {keys} and bias {no_bias.bias!r}; expected only 'weight', "
            "and self.bias = None."
        )


# --- MLP -----------------------------------------------------------------------------------------


@check("MLP maps (B, T, C) to (B, T, C) through a hidden layer 4 * n_embd wide", points=2)
@settings(max_examples=10)
@given(C=st.integers(1, 12), batch=st.integers(1, 3), T=st.integers(1, 5), bias=st.booleans())
def mlp_shapes_and_width(impl, C, batch, T, bias):
    mlp = impl.module("gpt").MLP(C, bias=bias)
    state = mlp.state_dict()
    expected = {"c_fc.weight": (4 * C, C), "c_proj.weight": (C, 4 * C)}
    if bias:
        expected.update({"c_fc.bias": (4 * C,), "c_proj.bias": (C,)})
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != expected:
        hint = "Use GPT-2's names and sizes: c_fc = nn.Linear(n_embd, 4 * n_embd), c_proj = nn.Linear(4 * n_embd, n_embd)"
        hint += ", both with bias=bias." if bias else ", and no biases when bias=False."
        widths = {v[0] for k, v in got.items() if k == "c_fc.weight"}
        if widths and widths != {4 * C}:
            hint = f"The hidden layer is {widths.pop()} wide; GPT's MLP widens to 4 * n_embd = {4 * C}. " + hint
        raise CheckFailure(f"MLP({C}, bias={bias}).state_dict() holds {got}; expected {expected}. {hint}")
    x = torch.randn(batch, T, C)
    expect_tensor(mlp(x), f"MLP({C})(x)", (batch, T, C), torch.float32)


@check("MLP applies GELU between its two linear layers", points=2)
@settings(max_examples=5)
@given(C=st.integers(2, 12), seed=st.integers(0, 1000))
def mlp_applies_gelu(impl, C, seed):
    mlp = impl.module("gpt").MLP(C)
    mlp.eval()
    state = mlp.state_dict()
    x = 2 * torch.randn(2, 3, C, generator=torch.Generator().manual_seed(seed))
    hidden = F.linear(x, state["c_fc.weight"], state.get("c_fc.bias"))

    def project(h):
        return F.linear(h, state["c_proj.weight"], state.get("c_proj.bias"))

    got = mlp(x)
    expect_tensor(got, f"MLP({C})(x)", (2, 3, C), torch.float32)
    expected = project(F.gelu(hidden))
    bugs = (
        ("Your MLP applies ReLU; GPT uses GELU (nn.GELU()), which is smooth and lets small negative values "
         "through.", project(F.relu(hidden))),
        ("Your MLP uses GELU's tanh approximation (GPT-2's original); this course's GPT uses the exact GELU, "
         "nn.GELU() with its default approximate='none'.", project(F.gelu(hidden, approximate="tanh"))),
        ("Your MLP has no activation between c_fc and c_proj, so the two layers collapse into one linear map. "
         "Apply nn.GELU() in between.", project(hidden)),
        ("Your MLP applies GELU after c_proj instead of between c_fc and c_proj.", F.gelu(project(hidden))),
    )
    hint = likely_bug(got, expected, bugs, "Expected dropout(c_proj(gelu(c_fc(x)))), with the exact GELU.")
    assert_close(got, expected, f"MLP({C})(x) in eval mode", rtol=RTOL, atol=ATOL, hint=hint)


# --- the block -----------------------------------------------------------------------------------


@check("Block is pre-norm with residuals: x + attn(ln_1(x)), then + mlp(ln_2(x))", points=3)
@settings(max_examples=8)
@given(sizes=gpt_sizes(), seed=st.integers(0, 1000))
@example(sizes=GPT_EDGE_SIZES, seed=0)
def block_pre_norm_residual(impl, sizes, seed):
    config, batch, T = split_sizes(sizes)
    C = config["n_embd"]
    gen = torch.Generator().manual_seed(seed)
    block = impl.module("gpt").Block(C, config["n_head"], config["block_size"], bias=config["bias"])
    block.eval()
    # Different gains in the two LayerNorms, so that using one in place of the other shows.
    impl.probe(set_parameter, block, "ln_1.weight", 1 + 0.5 * torch.randn(C, generator=gen))
    impl.probe(set_parameter, block, "ln_2.weight", 1 + 0.5 * torch.randn(C, generator=gen))
    x = 1 + 2 * torch.randn(batch, T, C, generator=gen)
    got = block(x)
    expect_tensor(got, "Block(x)", (batch, T, C), torch.float32)

    ln_1, attn, ln_2, mlp = block.ln_1, block.attn, block.ln_2, block.mlp
    mid = x + attn(ln_1(x))
    expected = mid + mlp(ln_2(mid))

    def bugs():
        post = ln_1(x + attn(x))
        yield ("Your block is post-norm: it normalizes after adding, ln(x + attn(x)). GPT-2 is pre-norm: "
               "x = x + attn(ln_1(x)), then x = x + mlp(ln_2(x)). The residual stream itself is never "
               "normalized.", ln_2(post + mlp(post)))
        no_res = attn(ln_1(x))
        yield ("Your block has no residual connections: it returns mlp(ln_2(attn(ln_1(x)))). Add each branch "
               "back to its input: x = x + attn(ln_1(x)), then x = x + mlp(ln_2(x)).", mlp(ln_2(no_res)))
        yield ("Your block drops the residual around the MLP: the second step is x = x + mlp(ln_2(x)).",
               mlp(ln_2(mid)))
        yield ("Your block drops the residual around the attention: the first step is x = x + attn(ln_1(x)).",
               no_res + mlp(ln_2(no_res)))
        normed = ln_1(x) + attn(ln_1(x))
        yield ("Your block adds each branch to the normalized x instead of to x: x = x + attn(ln_1(x)), not "
               "ln_1(x) + attn(ln_1(x)).", ln_2(normed) + mlp(ln_2(normed)))
        yield ("Your block uses ln_1 before the MLP too; the MLP's branch has its own LayerNorm, ln_2.",
               mid + mlp(ln_1(mid)))
        yield ("Your block runs the MLP on the block's input instead of on the output of the attention step.",
               mid + mlp(ln_2(x)))

    hint = likely_bug(got, expected, bugs(), "Expected x = x + attn(ln_1(x)), then x = x + mlp(ln_2(x)), "
                      "using the block's own ln_1, attn, ln_2 and mlp.")
    assert_close(got, expected, "Block(x)", rtol=RTOL, atol=ATOL, hint=hint)


# --- the GPT -------------------------------------------------------------------------------------


@check("GPT's parameters have GPT-2's names and shapes", points=1)
def gpt_state_dict_names(impl):
    V, bs, L, C = 13, 9, 2, 12
    model = new_gpt(impl, block_size=bs, vocab_size=V, n_layer=L, n_head=3, n_embd=C)
    grads = gradients_of(impl, model, torch.randint(0, V, (1, 4)), torch.randint(0, V, (1, 4)), what="the GPT")
    expected = {"transformer.wte.weight": (V, C), "transformer.wpe.weight": (bs, C), "lm_head.weight": (V, C),
                "transformer.ln_f.weight": (C,), "transformer.ln_f.bias": (C,)}
    for i in range(L):
        p = f"transformer.h.{i}."
        expected.update({
            p + "ln_1.weight": (C,), p + "ln_1.bias": (C,), p + "ln_2.weight": (C,), p + "ln_2.bias": (C,),
            p + "mlp.c_fc.weight": (4 * C, C), p + "mlp.c_fc.bias": (4 * C,),
            p + "mlp.c_proj.weight": (C, 4 * C), p + "mlp.c_proj.bias": (C,),
        })
    state = model.state_dict()
    got = {k: tuple(v.shape) for k, v in state.items() if k in grads}  # parameters only: no buffers
    shared = sorted(k for k in expected if k in state and k not in grads)
    if shared:
        raise CheckFailure(
            f"{', '.join(shared)} is not a parameter of its own: it is the same tensor as another one (weight "
            "tying?). Tying lm_head to wte is stage 08's job, with GPT-2's init; here keep lm_head a separate "
            "nn.Linear(n_embd, vocab_size, bias=False)."
        )
    missing = sorted(set(expected) - set(got))
    if missing:
        hint = "Follow GPT-2's names: transformer = nn.ModuleDict(wte, wpe, drop, h, ln_f), and lm_head."
        if not any(k.startswith("transformer.h.") for k in got):
            hint = ("No parameters of the blocks are registered: keep them in an nn.ModuleList "
                    "(a plain Python list hides them from .parameters(), the optimizer and the state_dict).")
        raise CheckFailure(f"The GPT has no parameter {', '.join(missing[:4])}"
                           f"{' and others' if len(missing) > 4 else ''}. {hint}")
    extra = sorted(k for k in got if k not in expected and ".attn." not in k)
    if extra:
        raise CheckFailure(f"The GPT has parameters GPT-2 does not: {', '.join(extra[:4])}. "
                           "In particular lm_head is nn.Linear(n_embd, vocab_size, bias=False).")
    wrong = [f"{k} is {got[k]}, expected {v}" for k, v in expected.items() if got[k] != v]
    if wrong:
        raise CheckFailure(f"With vocab_size={V}, block_size={bs}, n_embd={C}: {'; '.join(wrong[:3])}. "
                           "wte is (vocab_size, n_embd) and wpe is (block_size, n_embd): one row per possible position.")


@check("GPT returns (B, T, vocab_size) logits, and a loss only with targets", points=2)
@settings(max_examples=8)
@given(sizes=gpt_sizes())
@example(sizes=GPT_EDGE_SIZES)
def gpt_forward_shapes(impl, sizes):
    config, batch, T = split_sizes(sizes)
    V = config["vocab_size"]
    model = new_gpt(impl, **config)
    idx = torch.randint(0, V, (batch, T))
    logits, loss = forward(model, idx)
    if loss is not None:
        raise CheckFailure(f"model(idx) without targets should return loss None, got {loss!r}.")
    logits, loss = forward(model, idx, torch.randint(0, V, (batch, T)), "model(idx, targets)")
    expect_tensor(loss, "loss", (), torch.float32)


@check("the loss is the cross-entropy of the flattened logits over all B*T positions", points=2)
@settings(max_examples=5)
@given(batch=st.integers(1, 3), T=st.integers(1, 8), seed=st.integers(0, 1000))
def gpt_loss_is_cross_entropy(impl, batch, T, seed):
    V = 17
    gen = torch.Generator().manual_seed(seed)
    model = new_gpt(impl, block_size=8, vocab_size=V, n_layer=1, n_head=2, n_embd=8)
    idx, targets = torch.randint(0, V, (batch, T), generator=gen), torch.randint(0, V, (batch, T), generator=gen)
    flatten = "F.cross_entropy wants (N, V) logits and (N,) targets: flatten to logits.view(B * T, V) and targets.view(B * T)."
    try:
        logits, loss = forward(model, idx, targets, "model(idx, targets)")
    except LearnerError as exc:
        raise CheckFailure(f"{exc.describe()}\n{flatten}") from None
    expect_tensor(loss, "loss", (), torch.float32, hint=flatten)
    expected = F.cross_entropy(logits.view(-1, V), targets.view(-1))
    hint = flatten
    if torch.isclose(loss, expected * batch * T, rtol=1e-4) and batch * T > 1:
        hint = "Your loss is the sum over positions; use the mean (F.cross_entropy's default reduction)."
    elif torch.isclose(loss, F.cross_entropy(logits.view(-1, V), idx.view(-1)), rtol=1e-4):
        hint = "Your loss compares the logits with the input tokens; compare them with the targets."
    assert_close(loss, expected, "loss", rtol=1e-4, atol=1e-5, hint=hint)


@check("the loss at initialization is about ln(vocab_size)", points=1)
def gpt_init_loss(impl):
    V = 65
    model = new_gpt(impl, block_size=32, vocab_size=V, n_layer=2, n_head=4, n_embd=64)
    _, loss = forward(model, torch.randint(0, V, (8, 32)), torch.randint(0, V, (8, 32)), "model(idx, targets)")
    expect_tensor(loss, "loss", (), torch.float32)
    assert_init_loss(loss.item(), V, tolerance=0.6,
                     hint="A much larger loss means the initial logits are far too large: keep PyTorch's default "
                          "init (or normal(0, 0.02)), and make sure ln_f comes before lm_head.")


@check("GPT chains its parts: wte + wpe, the blocks in order, ln_f, lm_head", points=3)
@settings(max_examples=6)
@given(sizes=gpt_sizes(max_layers=3))
@example(sizes=GPT_EDGE_SIZES)
def gpt_chains_its_parts(impl, sizes):
    config, batch, T = split_sizes(sizes)
    model = new_gpt(impl, **config)
    idx = torch.randint(0, config["vocab_size"], (batch, T))
    logits = logits_of(model, idx)
    t = model.transformer
    tok, pos = t.wte(idx), t.wpe(torch.arange(T))

    def through(x, ln_f=True, order=None):
        for i in order or range(config["n_layer"]):
            x = block_of(model, i)(x)
        return model.lm_head(t.ln_f(x) if ln_f else x)

    expected = through(tok + pos)
    last = config["n_layer"] - 1

    def bugs():
        yield ("Your GPT skips the final LayerNorm: logits = lm_head(ln_f(x)), after the last block.",
               through(tok + pos, ln_f=False))
        yield "Your GPT leaves out the position embeddings: x = wte(idx) + wpe(torch.arange(T)).", through(tok)
        yield "Your GPT runs the blocks in reverse order.", through(tok + pos, order=range(last, -1, -1))
        yield ("Your GPT runs only the last block; x must go through every block in turn: for block in "
               "self.transformer.h: x = block(x).", through(tok + pos, order=[last]))

    hint = likely_bug(logits, expected, bugs(), "Expected lm_head(ln_f(h[n-1](...h[0](wte(idx) + "
                      "wpe(arange(T)))))), computed from your own modules.")
    assert_close(logits, expected, "logits", rtol=RTOL, atol=ATOL, hint=hint)


@check("GPT uses the position of each token (position embeddings)", points=1)
def gpt_uses_positions(impl):
    V = 20
    # One layer: with more, causal attention alone lets later layers guess positions a little.
    model = new_gpt(impl, block_size=8, vocab_size=V, n_layer=1, n_head=2, n_embd=16)
    idx = torch.tensor([[3, 7, 1, 2, 5, 6]])  # ids below block_size: wpe(idx) would run, and be wrong
    swapped = idx[:, [1, 0, 2, 3, 4, 5]]
    last, last_swapped = logits_of(model, idx)[0, -1], logits_of(model, swapped)[0, -1]
    if (last - last_swapped).abs().max() < 1e-4:
        raise CheckFailure(
            f"Swapping the first two tokens ({idx[0].tolist()} vs {swapped[0].tolist()}) did not change the logits "
            "at the last position: without position embeddings, attention sees a set of tokens, not a sequence. "
            "Add the position embeddings, looked up by position (not by token id): "
            "x = wte(idx) + wpe(torch.arange(T, device=idx.device))."
        )


@check("GPT is causal: the logits at position t depend only on tokens 0..t", points=2)
def gpt_is_causal(impl):
    V, T = 13, 8
    model = new_gpt(impl, block_size=T, vocab_size=V, n_layer=2, n_head=3, n_embd=12)
    deps = dependency_map(lambda idx: logits_of(model, idx), torch.randint(0, V, (2, T)), perturb_token(V))
    assert_causal(deps, "GPT(idx) logits", require_self=True,
                  hint="The mask lives in your stage 06 attention; in this stage, something else mixes positions: "
                       "a LayerNorm that normalizes over the time dimension (it must use dim=-1 only), "
                       "or a sum or mean over dim=1.")


@check("gradients reach every parameter of the GPT", points=2)
def gpt_gradients_reach(impl):
    V = 11
    model = new_gpt(impl, block_size=6, vocab_size=V, n_layer=2, n_head=2, n_embd=8, train=True)
    grads = gradients_of(impl, model, torch.randint(0, V, (3, 6)), torch.randint(0, V, (3, 6)), what="the GPT")
    assert_gradients_reach(grads, "the GPT (backward of the loss)")


@check("dropout is active in train mode and off in eval mode", points=2)
def gpt_dropout_train_eval(impl):
    V = 11
    idx = torch.randint(0, V, (2, 6))
    sizes = dict(block_size=6, vocab_size=V, n_head=2, n_embd=8)
    for n_layer, where in ((0, "transformer.drop, on the sum of the embeddings"), (1, "the blocks")):
        model = new_gpt(impl, n_layer=n_layer, dropout=0.5, train=True, **sizes)
        a, b = logits_of(model, idx), logits_of(model, idx)
        if torch.allclose(a, b):
            raise CheckFailure(
                f"With dropout=0.5 and n_layer={n_layer}, two calls in train mode gave the same logits: dropout is "
                f"never applied ({where}). Use nn.Dropout(config.dropout) modules and call them in forward."
            )
        model.eval()
        a, b = logits_of(model, idx), logits_of(model, idx)
        twin = new_gpt(impl, n_layer=n_layer, dropout=0.0, **sizes)
        twin.load_state_dict(model.state_dict())
        if not torch.equal(a, b):
            raise CheckFailure(
                f"With dropout=0.5 and n_layer={n_layer}, two calls in eval mode gave different logits: dropout is "
                "still active in eval mode. Use nn.Dropout modules (model.eval() switches them off), or pass "
                "training=self.training to F.dropout."
            )
        assert_close(a, logits_of(twin, idx), f"logits in eval mode with dropout=0.5 (n_layer={n_layer})", rtol=RTOL, atol=ATOL,
                     hint="In eval mode the model must equal the same weights with dropout=0.0; dropout must only act in train mode.")
    mlp = impl.module("gpt").MLP(8, dropout=0.5)
    x = torch.randn(2, 3, 8)
    mlp.train()
    if torch.equal(mlp(x), mlp(x)):
        raise CheckFailure("MLP(8, dropout=0.5) gave the same output twice in train mode: apply its nn.Dropout "
                           "after c_proj.")


@check("GPT refuses an input longer than block_size with a clear error", points=1)
def gpt_rejects_long_input(impl):
    bs, T = 7, 10
    model = new_gpt(impl, block_size=bs, vocab_size=9, n_layer=1, n_head=1, n_embd=4)
    try:
        model(torch.randint(0, 9, (1, T)))
    except LearnerError as exc:
        text = str(exc.original)
        from_embedding = isinstance(exc.original, IndexError)
        if from_embedding or not any(s in text for s in ("block_size", "block size", str(bs))):
            where = f" (it comes from the position embedding, which has no row for position {bs})" if from_embedding else ""
            raise CheckFailure(
                f"model(idx) with T={T} > block_size={bs} raised {type(exc.original).__name__}: {text!r}, which does "
                f"not say what is wrong{where}. Check T against block_size at the start of forward and raise a "
                "ValueError that names block_size."
            ) from None
        return
    raise CheckFailure(
        f"model(idx) with T={T} > block_size={bs} returned without an error; it has no position embedding for "
        "positions past block_size. Raise a ValueError that names block_size."
    )


# --- generation ----------------------------------------------------------------------------------


@check("generate crops the context to the last block_size tokens", points=2)
def generate_crops_context(impl):
    V, bs = 10, 4
    model = new_gpt(impl, block_size=bs, vocab_size=V, n_layer=1, n_head=2, n_embd=8)
    idx = torch.randint(0, V, (2, 10))
    try:
        out = model.generate(idx, 6)
    except LearnerError as exc:
        raise CheckFailure(
            f"generate with a 10-token prompt and block_size={bs} failed: {exc.describe()}\n"
            "The model can only read block_size tokens: crop the context to the last block_size tokens "
            "(idx[:, -block_size:]) before each forward."
        ) from None
    expect_tensor(out, "generate(idx, 6)", (2, 16), torch.int64)
    if not torch.equal(out[:, :10], idx):
        raise CheckFailure("generate changed the prompt: the first T columns of its result must be idx itself "
                           "(crop only what you feed the model, not what you return).")
    if out.min() < 0 or out.max() >= V:
        raise CheckFailure(f"generate produced token {int(out.max())}, outside [0, {V}).")


@check("generate follows the last position, with temperature and top_k=1 acting greedily", points=2)
def generate_greedy_last_position(impl):
    V, bs = 12, 5
    model = new_gpt(impl, block_size=bs, vocab_size=V, n_layer=2, n_head=2, n_embd=16)
    idx = torch.randint(0, V, (2, 7))
    expected = greedy_continuation(model, idx, 8, bs)
    for how, kwargs in (("top_k=1", dict(top_k=1)), ("temperature=1e-6", dict(temperature=1e-6))):
        out = model.generate(idx, 8, **kwargs)
        expect_tensor(out, f"generate(idx, 8, {how})", (2, 15), torch.int64)
        if not torch.equal(out, expected):
            step = int((out != expected).any(0).nonzero()[0]) - 7
            raise CheckFailure(
                f"generate(idx, 8, {how}) should pick the most likely token at every step, but new token {step} "
                f"differs: got {out[:, 7:].tolist()}, expected {expected[:, 7:].tolist()}. Take the logits at the "
                "last position (logits[:, -1, :]), divide by temperature, keep the top_k largest, then softmax and "
                "sample."
            )


@check("generate with top_k samples only among the top_k most likely tokens", points=2)
def generate_top_k(impl):
    V, bs, k = 16, 6, 3
    model = new_gpt(impl, block_size=bs, vocab_size=V, n_layer=1, n_head=2, n_embd=16)
    idx = torch.randint(0, V, (4, 3))
    out = model.generate(idx, 12, temperature=2.0, top_k=k)
    expect_tensor(out, f"generate(idx, 12, top_k={k})", (4, 15), torch.int64)
    for t in range(3, 15):
        logits = logits_of(model, out[:, max(0, t - bs):t])[:, -1]
        rank = (logits > logits.gather(1, out[:, t:t + 1])).sum(1)
        if (rank >= k).any():
            b = int((rank >= k).nonzero()[0])
            raise CheckFailure(
                f"With top_k={k}, row {b} sampled token {int(out[b, t])} at position {t}, which is only the "
                f"{int(rank[b]) + 1}th most likely there. Set every logit below the top_k-th largest to -inf "
                "before the softmax (torch.topk gives the k-th largest value)."
            )


# --- general properties (grader/checks/properties.py) -----------------------------------------


def parts(impl, C: int = 8):
    """(name, module) for a LayerNorm, an MLP and a Block of width C, in eval mode."""
    gpt = impl.module("gpt")
    modules = [("LayerNorm(x)", gpt.LayerNorm(C)), ("MLP(x)", gpt.MLP(C)), ("Block(x)", gpt.Block(C, 2, 8))]
    for _, module in modules:
        module.eval()
    return modules


@check("LayerNorm, MLP and Block leave x unchanged, even when x requires grad", points=1)
def inputs_unchanged(impl):
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(0))
    for what, module in parts(impl):
        assert_inputs_unchanged(impl, module, x, what=what, names=("x",))


@check("LayerNorm, MLP, Block and GPT follow the input's device and dtype (meta, float64)", points=1)
def follows_device_and_dtype(impl):
    x = torch.randn(2, 5, 8)
    for what, module in parts(impl):
        assert_follows_device_and_dtype(impl, module, x, what=what)
    model = new_gpt(impl, block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=8)
    idx = torch.randint(0, 11, (2, 6), generator=torch.Generator().manual_seed(1))
    assert_follows_device_and_dtype(impl, model, idx, idx, what="GPT(idx, targets)")


@check("Block stays finite and correct on large activations (x times 10 and 100)", points=1)
def block_stable_on_large_inputs(impl):
    _, block = parts(impl)[2]
    assert_stable(
        impl, block, torch.randn(2, 6, 8), what="Block(x)", rtol=1e-3, atol=1e-4,
        hint="Normalize with the LayerNorm before attention and the MLP (pre-norm), and use a softmax that "
        "subtracts each row's max.",
    )
