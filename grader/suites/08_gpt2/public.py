"""Stage 08, public checks: GPT-2's tying, init, parameter count, optimizer groups, sampling
and loading HuggingFace weights.

Oracles: F.cross_entropy, the GPT-2 small parameter count (124,439,808, as HuggingFace's
GPT2LMHeadModel has it), the statistics GPT-2's init prescribes, the learner's own logits
(for greedy, top-k and temperature sampling), and a HuggingFace GPT2LMHeadModel built from a
GPT2Config with random weights (nothing is downloaded) for loading.
"""
import math

import torch
import torch.nn.functional as F
from hypothesis import example, given, settings

from grader import check
from grader.checks import (
    CheckFailure,
    Skip,
    assert_causal,
    assert_close,
    assert_follows_device_and_dtype,
    assert_gradients_reach,
    gradients_of,
    assert_init_loss,
    assert_inputs_unchanged,
    assert_weight_stats,
    cause,
    dependency_map,
    expect_raises,
    expect_tensor,
    failing_line,
    greedy_continuation,
    model_outputs,
    perturb_token,
)
from grader.handle import LearnerError
from grader.probes import (
    build_on_meta,
    generate_seeded,
    optimizer_groups,
    set_parameter,
    tied_parameters,
    train_steps,
)
from grader.strategies import GPT_EDGE_SIZES, gpt_sizes, split_sizes

GPT2_SMALL_PARAMETERS = 124_439_808  # GPT-2 small with wte and lm_head tied, wpe included
CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


# --- helpers -------------------------------------------------------------------------------------


def new_gpt2(impl, train=False, **sizes):
    gpt2 = impl.module("gpt2")
    model = gpt2.GPT2(gpt2.GPT2Config(**sizes))
    model.train() if train else model.eval()
    return model


def forward(model, idx, targets=None, what="model(idx)"):
    """(logits, loss) from the learner's GPT2, checked to be a pair with (B, T, V) float32 logits."""
    return model_outputs(model, idx, *(() if targets is None else (targets,)), what=what,
                         hint="GPT2 keeps stage 07's forward: logits (B, T, vocab_size).")


def logits_of(model, idx):
    return forward(model, idx)[0]


def count_from_config(block_size, vocab_size, n_layer, n_embd, bias, **_):
    """GPT-2's parameter count from its sizes, the tied wte/lm_head counted once."""
    C = n_embd
    norms = 2 * C if bias else C  # a LayerNorm: gain, and bias when bias=True
    linear = lambda i, o: i * o + (o if bias else 0)  # noqa: E731
    block = 2 * norms + linear(C, 3 * C) + linear(C, C) + linear(C, 4 * C) + linear(4 * C, C)
    return vocab_size * C + block_size * C + n_layer * block + norms




def check_config_defaults(impl):
    """GPT2Config() must be GPT-2 small (the dataclass is given; a learner may have edited it)."""
    config = impl.module("gpt2").GPT2Config()
    expected = dict(block_size=1024, vocab_size=50257, n_layer=12, n_head=12, n_embd=768, dropout=0.0, bias=True)
    got = {}
    for name in expected:
        try:
            got[name] = getattr(config, name)
        except LearnerError:
            got[name] = "<missing>"
    wrong = {k: v for k, v in got.items() if v != expected[k] or type(v) is not type(expected[k])}
    if wrong:
        raise CheckFailure(
            f"GPT2Config() has {wrong}; GPT-2 small has "
            + ", ".join(f"{k}={expected[k]!r}" for k in wrong)
            + ". Keep the dataclass's defaults as given."
        )


# --- shapes and the loss -------------------------------------------------------------------------


@check("logits are (B, T, vocab_size) float32 and the loss is the mean cross-entropy, over many sizes", points=2)
@settings(max_examples=8)
@given(sizes=gpt_sizes())
@example(sizes=GPT_EDGE_SIZES)
def shapes_and_loss(impl, sizes):
    config, batch, T = split_sizes(sizes)
    model = new_gpt2(impl, **config)
    V = config["vocab_size"]
    idx, targets = torch.randint(0, V, (batch, T)), torch.randint(0, V, (batch, T))
    logits, no_loss = forward(model, idx)
    if no_loss is not None:
        raise CheckFailure(f"model(idx) without targets returned a loss of {no_loss!r}; it should return (logits, None).")
    logits_t, loss = forward(model, idx, targets, "model(idx, targets)")
    expect_tensor(loss, "loss", (), torch.float32, hint="The loss is a 0-dim tensor: F.cross_entropy's mean.")
    assert_close(logits_t, logits, "logits with targets vs without", rtol=1e-5, atol=1e-6,
                 hint="Passing targets must not change the logits.")
    assert_close(loss, F.cross_entropy(logits.view(-1, V), targets.view(-1)), "loss", rtol=1e-4, atol=1e-5,
                 hint="The loss is F.cross_entropy(logits.view(B * T, V), targets.view(B * T)), the mean over all "
                      "positions.")


# --- parameters: count and tying -----------------------------------------------------------------


@check("GPT2Config() (GPT-2 small) has exactly 124,439,808 parameters", points=2)
def parameter_count_124m(impl):
    gpt2 = impl.module("gpt2")
    # Built on the meta device: shapes without memory, so 124M parameters cost nothing.
    info = impl.probe(build_on_meta, gpt2.GPT2, gpt2.GPT2Config())
    counted, unique = info["num_parameters"], info["unique"]
    if type(counted) is not int:
        raise CheckFailure(f"num_parameters() returned a {type(counted).__name__} ({counted!r}); it should return "
                           "an int: sum(p.numel() for p in self.parameters()).")
    shapes = info["shapes"]
    check_config_defaults(impl)  # a count off because the sizes were edited gets its own message
    if counted == GPT2_SMALL_PARAMETERS and unique == GPT2_SMALL_PARAMETERS:
        return
    V, C = 50257, 768
    if unique == GPT2_SMALL_PARAMETERS + V * C or "lm_head.weight" in shapes:
        cause = (f"The model has {unique:,} unique parameters: {V * C:,} ({V} x {C}) too many, a whole second "
                 "vocab_size x n_embd matrix. lm_head.weight and transformer.wte.weight must be one tied tensor, "
                 "not two.")
    elif unique != GPT2_SMALL_PARAMETERS:
        cause = (f"The model has {unique:,} unique parameters, {unique - GPT2_SMALL_PARAMETERS:+,} off. Compare "
                 "your parameter shapes with GPT-2's (stage 07's GPT with GPT2Config()).")
    elif counted == GPT2_SMALL_PARAMETERS + V * C:
        cause = (f"num_parameters() returned {counted:,}: it counts the tied wte/lm_head matrix twice ({V * C:,} "
                 "too many). Iterating over self.state_dict() lists the tied tensor under both names; "
                 "self.parameters() yields it once.")
    elif counted > GPT2_SMALL_PARAMETERS:
        cause = (f"num_parameters() returned {counted:,}, {counted - GPT2_SMALL_PARAMETERS:,} too many. Buffers (the "
                 "causal masks) are not parameters, and the tied tensor counts once: sum(p.numel() for p in "
                 "self.parameters()).")
    else:
        cause = (f"num_parameters() returned {counted:,}, but the model has {unique:,} unique parameters: count "
                 "every parameter once, sum(p.numel() for p in self.parameters()), including the position "
                 "embeddings.")
    raise CheckFailure(f"GPT2(GPT2Config()) should have {GPT2_SMALL_PARAMETERS:,} parameters. {cause}")


@check("num_parameters counts each parameter once, for any size, with and without biases", points=1)
@settings(max_examples=6)
@given(sizes=gpt_sizes(max_layers=3))
def parameter_count_any_size(impl, sizes):
    config, _, _ = split_sizes(sizes)
    counted = new_gpt2(impl, **config).num_parameters()
    expected = count_from_config(**config)
    if counted != expected:
        V, C = config["vocab_size"], config["n_embd"]
        why = ("\n" + cause("It counts the tied wte/lm_head matrix twice: self.parameters() yields it once.")
               if counted == expected + V * C else " Count each parameter once: sum(p.numel() for p in "
               "self.parameters()).")
        raise CheckFailure(f"GPT2Config({config}): num_parameters() returned {counted!r}; GPT-2's shapes give "
                           f"{expected:,}.{why}")


def tied_by_behaviour(impl, model, idx, V: int, C: int) -> bool:
    """Write a new matrix through one name, then the same matrix through the other: when the two
    are one tensor, the second write changes nothing the model computes. Judged by the grader
    from the logits, whatever the learner's process says about its parameters."""
    gen = torch.Generator().manual_seed(8)
    for first, second in (("lm_head.weight", "transformer.wte.weight"), ("transformer.wte.weight", "lm_head.weight")):
        matrix = torch.randn(V, C, generator=gen) * 0.5
        impl.probe(set_parameter, model, first, matrix)
        after_one = logits_of(model, idx)
        impl.probe(set_parameter, model, second, matrix)
        if not torch.equal(logits_of(model, idx), after_one):
            return False
    return True


@check("the token embedding and the output head are one tensor: tied, and a gradient step moves both", points=3)
def weight_tying(impl):
    V = 17
    model = new_gpt2(impl, block_size=8, vocab_size=V, n_layer=1, n_head=2, n_embd=8)
    idx, targets = torch.randint(0, V, (4, 8)), torch.randint(0, V, (4, 8))
    # The probe's report picks the message; passing rests on behaviour the grader observes.
    info = impl.probe(tied_parameters, model, "transformer.wte.weight", "lm_head.weight", idx, targets)
    if info["same_object"] and not tied_by_behaviour(impl, model, idx, V, 8):
        info["same_object"] = info["same_storage"] = False
    if not info["same_object"]:
        if info["same_storage"]:
            raise CheckFailure(
                "transformer.wte.weight and lm_head.weight share their memory but are two nn.Parameter objects "
                f"(model.named_parameters() lists {info['listed_as']}), as after assigning .data. The optimizer "
                "then sees two parameters and updates the shared memory twice, each with only its own part of the "
                "gradient, and num_parameters counts the matrix twice. Assign the Parameter itself: self.transformer.wte.weight = self.lm_head.weight."
            )
        raise CheckFailure(
            "transformer.wte.weight and lm_head.weight are two different tensors: your tying makes a copy "
            "(nn.Parameter(w.clone()), copy_, or a new nn.Parameter), which drifts apart from the first training "
            f"step (after one step they are {'equal' if info['equal_after'] else 'no longer equal'}). Assign the "
            "Parameter itself, so that both modules hold the same object: "
            "self.transformer.wte.weight = self.lm_head.weight."
        )
    if info["moved_a"] == 0.0:
        raise CheckFailure("One gradient step on the loss did not change the tied wte/lm_head tensor: no gradient "
                           "reaches it. Is it detached or frozen (requires_grad=False)?")
    if not info["equal_after"]:
        raise CheckFailure("After one gradient step transformer.wte.weight and lm_head.weight differ, although they "
                           "were reported as one tensor.")


# --- initialization ------------------------------------------------------------------------------


@check("GPT-2 init: normal(0, 0.02) weights and embeddings, zero biases, c_proj scaled by 1/sqrt(2 * n_layer)",
       points=3)
def init_statistics(impl):
    n_layer, C, V, bs = 4, 96, 500, 128
    model = new_gpt2(impl, block_size=bs, vocab_size=V, n_layer=n_layer, n_head=4, n_embd=C)
    state = model.state_dict()

    def gather(suffix):
        tensors = [state[f"transformer.h.{i}.{suffix}"] for i in range(n_layer)]
        return torch.cat([t.flatten() for t in tensors])

    def std_of(w):
        return w.double().std().item()

    default_linear = "PyTorch's default nn.Linear init (uniform, std 1/sqrt(3 * fan_in))"
    for name, w in (("transformer.wte.weight", state["transformer.wte.weight"]),
                    ("transformer.wpe.weight", state["transformer.wpe.weight"])):
        hint = ("\n" + cause("Its std is about 1: nn.Embedding's default init. Replace nn.Embedding's default "
                              "normal(0, 1) with normal(0, 0.02) in _init_weights, as for the Linear weights.")
                if std_of(w) > 0.5 else "Embeddings get normal(0, 0.02), like the Linear weights.")
        assert_weight_stats(w, name, 0.0, 0.02, mean_tol=0.002, std_rel_tol=0.1, hint=hint)
    for suffix in ("attn.c_attn.weight", "mlp.c_fc.weight"):
        w = gather(suffix)
        s = std_of(w)
        if abs(s - 0.02 / math.sqrt(2 * n_layer)) < 0.002:
            hint = "\n" + cause("It is scaled like a residual projection: only the weights whose names end in "
                               "'c_proj.weight' (attn.c_proj and mlp.c_proj) get 0.02 / sqrt(2 * n_layer); c_attn "
                               "and c_fc keep 0.02.")
        elif abs(s - 1 / math.sqrt(3 * C)) < 0.1 / math.sqrt(3 * C):
            hint = "\n" + cause(f"That is {default_linear}: apply _init_weights to every module with self.apply.")
        else:
            hint = "Every nn.Linear weight gets normal(0, 0.02)."
        assert_weight_stats(w, f"transformer.h.*.{suffix} (all {n_layer} blocks)", 0.0, 0.02, mean_tol=0.002,
                            std_rel_tol=0.1, hint=hint)
    scaled = 0.02 / math.sqrt(2 * n_layer)
    for suffix, fan_in in (("attn.c_proj.weight", C), ("mlp.c_proj.weight", 4 * C)):
        s = std_of(gather(suffix))
        candidates = (
            (0.02, "not scaled at all: the residual projections (names ending in 'c_proj.weight') get "
                   "0.02 / sqrt(2 * n_layer), re-drawn after self.apply(self._init_weights)."),
            (0.02 / math.sqrt(n_layer), "scaled by 1/sqrt(n_layer): each block adds to the residual stream twice "
                                        "(attention and MLP), so the scale is 1/sqrt(2 * n_layer)."),
            (0.02 / (2 * n_layer), "scaled by 1/(2 * n_layer): the scale is the square root, 1/sqrt(2 * n_layer), "
                                   "so that the variances of the 2 * n_layer additions sum to what one would give."),
            (1 / math.sqrt(3 * fan_in), f"{default_linear}: your init never reached it."),
        )
        hint = next(("\n" + cause(f"{suffix} is {why}") for value, why in candidates if abs(s - value) < 0.1 * value),
                    "Expected 0.02 / sqrt(2 * n_layer) for the residual projections (names ending in "
                    "'c_proj.weight').")
        assert_weight_stats(gather(suffix), f"transformer.h.*.{suffix} (all {n_layer} blocks, n_layer={n_layer})",
                            0.0, scaled, mean_tol=0.001, std_rel_tol=0.1, hint=hint)
    for name, value in state.items():
        is_norm = ".ln_1." in name or ".ln_2." in name or name.startswith("transformer.ln_f.")
        if is_norm:
            expected = torch.ones_like(value) if name.endswith("weight") else torch.zeros_like(value)
            if not torch.equal(value, expected):
                what = "gain" if name.endswith("weight") else "bias"
                raise CheckFailure(
                    f"{name} (a LayerNorm {what}) at initialization has mean {value.mean().item():.3g} and std "
                    f"{value.std().item():.3g}; it must stay at {'ones' if what == 'gain' else 'zeros'}.\n"
                    + cause("Your init reached the LayerNorms: touch only nn.Linear and nn.Embedding modules (a loop "
                            "over every parameter re-draws the gains too, and a gain near 0 switches its features "
                            "off).")
                )
    for name, value in state.items():
        is_norm = ".ln_1." in name or ".ln_2." in name or name.startswith("transformer.ln_f.")
        if name.endswith(".bias") and not is_norm and value.abs().max() > 0:
            drawn = abs(value.double().std().item() - 0.02) < 0.005
            origin = ("They were drawn from normal(0, 0.02) like the weights" if drawn else
                      "PyTorch's default nn.Linear bias is uniform and non-zero, and your init left it")
            raise CheckFailure(
                f"{name} at initialization is not zero (largest |value| {value.abs().max().item():.3g}).\n"
                + cause(f"{origin}; GPT-2 starts every Linear bias at 0 (nn.init.zeros_(module.bias) in "
                        "_init_weights).")
            )


@check("the loss at initialization is ln(vocab_size) within 0.1", points=1)
def init_loss(impl):
    V = 256
    model = new_gpt2(impl, block_size=32, vocab_size=V, n_layer=2, n_head=4, n_embd=64)
    _, loss = forward(model, torch.randint(0, V, (8, 32)), torch.randint(0, V, (8, 32)), "model(idx, targets)")
    expect_tensor(loss, "loss", (), torch.float32)
    assert_init_loss(loss.item(), V, tolerance=0.1, hint=(
        "With GPT-2's init the logits start tiny (std about 0.02 * sqrt(n_embd)), so every token is about equally "
        "likely." + ("\n" + cause("Your initial logits are large: with the tied head, embeddings left at "
                                  "nn.Embedding's default normal(0, 1) make every logit huge. Initialize nn.Embedding "
                                  "weights with normal(0, 0.02).") if loss.item() > math.log(V) else "")))


# --- the model as a whole ------------------------------------------------------------------------


@check("GPT2 is causal: the logits at position t depend only on tokens 0..t", points=2)
def causal(impl):
    V, T = 13, 8
    model = new_gpt2(impl, block_size=T, vocab_size=V, n_layer=2, n_head=3, n_embd=12)
    # GPT-2's init makes logits small; differences still show far above the map's threshold.
    deps = dependency_map(lambda idx: logits_of(model, idx), torch.randint(0, V, (2, T)), perturb_token(V))
    assert_causal(deps, "GPT2(idx) logits", require_self=True,
                  hint="GPT2 runs stage 07's forward and stage 06's attention: a leak comes from a mask that lets "
                       "the future in, or a LayerNorm or sum over the time dimension.")


@check("gradients reach every parameter, the tied one included", points=2)
def gradients_reach(impl):
    V = 11
    model = new_gpt2(impl, block_size=6, vocab_size=V, n_layer=2, n_head=2, n_embd=8, dropout=0.1, train=True)
    grads = gradients_of(impl, model, torch.randint(0, V, (3, 6)), torch.randint(0, V, (3, 6)), what="GPT2")
    assert_gradients_reach(grads, "GPT2 (backward of the loss)")


@check("dropout is active in train mode and off in eval mode", points=1)
def dropout_train_eval(impl):
    V = 11
    model = new_gpt2(impl, block_size=6, vocab_size=V, n_layer=1, n_head=2, n_embd=8, dropout=0.5, train=True)
    idx = torch.randint(0, V, (2, 6))
    if torch.equal(logits_of(model, idx), logits_of(model, idx)):
        raise CheckFailure("With dropout=0.5, two calls in train mode gave the same logits.\n"
                           + cause("GPT2Config.dropout does not reach the model: pass the config on to stage 07's "
                                   "GPT."))
    model.eval()
    if not torch.equal(logits_of(model, idx), logits_of(model, idx)):
        raise CheckFailure("With dropout=0.5, two calls in eval mode gave different logits.\n"
                           + cause("Dropout is still on in eval mode: use nn.Dropout (or F.dropout with "
                                   "training=self.training), which eval() switches off."))


# --- the optimizer -------------------------------------------------------------------------------


def describe_optimizer(impl, model, **kwargs):
    try:
        optimizer = model.configure_optimizers(**kwargs)
    except LearnerError as exc:
        if "more than one parameter group" in str(exc.original):
            raise CheckFailure(
                f"{exc.describe()}\nA parameter is in both groups. Split the parameters so that each is in exactly "
                "one group: p.dim() >= 2 in the group with weight decay, p.dim() < 2 in the other."
            ) from None
        raise
    return impl.probe(optimizer_groups, model, optimizer)


@check("configure_optimizers: AdamW, decay on matrices and embeddings only, every parameter in one group", points=3)
def optimizer_groups_split(impl):
    model = new_gpt2(impl, block_size=8, vocab_size=20, n_layer=2, n_head=2, n_embd=8)
    wd, lr, betas = 0.1, 3e-4, (0.9, 0.95)
    info = describe_optimizer(impl, model, weight_decay=wd, learning_rate=lr, betas=betas, device_type="cpu")
    if not info["is_adamw"]:
        raise CheckFailure(f"configure_optimizers returned a {info['type']}; expected a torch.optim.AdamW.")
    params = info["parameters"]
    seen: dict[str, int] = {}
    for g, group in enumerate(info["groups"]):
        for name in group["names"]:
            if name.startswith("<"):
                raise CheckFailure(f"Group {g} of the optimizer holds {name[1:-1]}. Pass the model's own parameters.")
            if name in seen:
                where = (f"is in groups {seen[name]} and {g}" if seen[name] != g else
                         f"appears twice in group {g} (a tied tensor collected under both of its names?)")
                raise CheckFailure(
                    f"{name} {where} of the optimizer: it would be updated twice per step. Each parameter goes in "
                    "exactly one group, once: take them from self.parameters(), which yields a tied tensor once, and "
                    "split by p.dim() >= 2 (decay) and p.dim() < 2 (no decay)."
                )
            seen[name] = g
    missing = [n for n, p in params.items() if p["requires_grad"] and n not in seen]
    if missing:
        raise CheckFailure(
            f"{len(missing)} trainable parameters are in no group of the optimizer, so they never train: "
            f"{', '.join(missing[:4])}. Every parameter of self.parameters() goes into one of the two groups."
        )
    for group in info["groups"]:
        if group["lr"] != lr or group["betas"] != betas:
            raise CheckFailure(f"A group has lr={group['lr']} and betas={group['betas']}; configure_optimizers was "
                               f"given learning_rate={lr} and betas={betas}. Pass lr=learning_rate, betas=betas.")
    decay_of = {name: group["weight_decay"] for group in info["groups"] for name in group["names"]}
    for name, p in params.items():
        matrix = len(p["shape"]) >= 2
        want = wd if matrix else 0.0
        if decay_of[name] != want:
            if matrix:
                cause = ("Matrices (Linear weights) and embeddings are the parameters weight decay is for: put every "
                         "parameter with p.dim() >= 2 in the group with weight_decay.")
            elif ".ln_" in name or "ln_f" in name:
                cause = ("A LayerNorm gain or bias is 1-D: decay would pull the gains towards 0 and switch features "
                         "off. Decide by p.dim() < 2, not by the name ending in 'weight'.")
            else:
                cause = "Biases are 1-D and get no weight decay: put every parameter with p.dim() < 2 in the group " \
                        "with weight_decay 0.0."
            raise CheckFailure(
                f"{name} (shape {p['shape']}) gets weight_decay {decay_of[name]}, expected {want}. {cause}"
            )
    decay_by_behaviour(impl, set(params))


def decay_by_behaviour(impl, parameter_names: set[str]):
    """The groups as the weights show them, judged by the grader: one step of the learner's optimizer
    on zero gradients. AdamW's moments stay zero then, so it only decays: every matrix shrinks by
    exactly (1 - lr * weight_decay), every vector and every buffer stays put. Adam's L2 penalty, a
    parameter left out, or a vector decayed all show in the weights, whatever the optimizer says of
    itself. (A tensor that calls itself a buffer but moves is caught too.)"""
    model = new_gpt2(impl, block_size=8, vocab_size=20, n_layer=2, n_head=2, n_embd=8)
    wd, lr = 0.5, 0.1
    optimizer = model.configure_optimizers(weight_decay=wd, learning_rate=lr, betas=(0.9, 0.95), device_type="cpu")
    gen = torch.Generator().manual_seed(4)
    impl.probe(train_steps, model, torch.randint(0, 20, (2, 8), generator=gen), torch.randint(0, 20, (2, 8),
               generator=gen), 1, 0.0)  # gradients on every parameter (its own AdamW at lr 0 moves nothing)
    model.zero_grad(set_to_none=False)
    before = model.state_dict()
    optimizer.step()
    after = model.state_dict()
    for name, value in before.items():
        if not value.is_floating_point() or name not in after:
            continue
        # A tied tensor is listed once: its second name in the state dict holds the same values.
        alias = next((other for other in parameter_names if other in before and before[other].shape == value.shape
                      and torch.equal(before[other], value)), None)
        matrix = value.dim() >= 2 and alias is not None
        want = value * (1 - lr * wd) if matrix else value
        if torch.allclose(after[name], want, rtol=1e-6, atol=1e-8):
            continue
        moved = "did not move" if torch.equal(after[name], value) else "moved otherwise"
        raise CheckFailure(
            f"One step of configure_optimizers(weight_decay={wd}, learning_rate={lr}) on zero gradients should "
            f"{'shrink' if matrix else 'leave'} {name} (shape {tuple(value.shape)}) "
            f"{f'by exactly (1 - lr * weight_decay) = {1 - lr * wd:g}' if matrix else 'as it is'}; it {moved}. "
            "AdamW with zero gradients only decays: "
            + ("this matrix is in no group with weight_decay, or the optimizer is not AdamW (Adam's weight_decay "
               "adds to the gradient instead)." if matrix else "this vector (or buffer) is in a group with weight "
               "decay.")
        )


@check("configure_optimizers uses fused AdamW for device_type='cuda'", points=1)
def optimizer_fused(impl):
    import inspect

    if "fused" not in inspect.signature(torch.optim.AdamW).parameters:
        raise Skip("this torch's AdamW has no fused implementation")
    model = new_gpt2(impl, block_size=8, vocab_size=20, n_layer=1, n_head=2, n_embd=8)
    try:
        info = describe_optimizer(impl, model, weight_decay=0.1, learning_rate=1e-3, device_type="cuda")
    except LearnerError as exc:
        if "fused" in str(exc.original) and not torch.cuda.is_available():
            raise Skip("needs CUDA (this torch's fused AdamW does not take CPU tensors)") from None
        raise
    if not info["fused"]:
        raise CheckFailure(
            "configure_optimizers(..., device_type='cuda') returned an AdamW without fused=True. On a GPU the fused "
            "AdamW updates every parameter in one kernel: pass fused=True when device_type == 'cuda' and "
            "'fused' in inspect.signature(torch.optim.AdamW).parameters."
        )


# --- sampling ------------------------------------------------------------------------------------


def first_difference(out, expected, start):
    return int((out != expected).any(0).nonzero()[0]) - start


GREEDY_TITLE = "greedy decoding: temperature=0 takes the argmax, and top_k=1 gives the same tokens"


@check(GREEDY_TITLE, points=2)
def generate_greedy(impl):
    V, bs, T, n = 12, 8, 3, 6
    model = new_gpt2(impl, block_size=bs, vocab_size=V, n_layer=2, n_head=2, n_embd=16)
    idx = torch.randint(0, V, (3, T))
    expected = greedy_continuation(model, idx, n, bs)
    for how, kwargs in (("temperature=0", dict(temperature=0)), ("top_k=1", dict(top_k=1))):
        try:
            out = model.generate(idx, n, **kwargs)
        except LearnerError as exc:
            # The hint comes from what failed: probabilities that hold inf or NaN, or a division by zero.
            text = f"{exc.original} {failing_line(exc)}".lower()
            not_finite = "nan" in text or "inf" in text or isinstance(exc.original, ZeroDivisionError)
            hint = ""
            if not_finite and "temperature" in how:
                hint = "\n" + cause("temperature=0 means greedy: take logits.argmax(-1) instead of dividing by 0 "
                                   "(which gives inf and NaN probabilities).")
            elif not_finite:
                hint = "\n" + cause("With top_k=1 every logit became -inf, so the probabilities are NaN: set only the "
                                   "logits below the k-th largest to -inf (<, not <=), so that the largest survives.")
            raise CheckFailure(f"generate(idx, {n}, {how}) failed: {exc.describe()}{hint}") from None
        expect_tensor(out, f"generate(idx, {n}, {how})", (3, T + n), torch.int64)
        if not torch.equal(out[:, :T], idx):
            raise CheckFailure(f"generate(idx, {n}, {how}) changed the prompt: the first T columns must be idx.")
        if not torch.equal(out, expected):
            step = first_difference(out, expected, T)
            # temperature=0 is tried first: when it passed, a top_k=1 that differs is the top-k filter's doing.
            hint = (" temperature=0 means greedy: append logits[:, -1, :].argmax(-1)." if "temperature" in how else
                    "\n" + cause("Your top_k lets other tokens through: with top_k=1 only the largest logit survives. "
                                 "Set every logit below the top_k-th largest to -inf before the softmax."))
            raise CheckFailure(
                f"generate(idx, {n}, {how}) should pick the most likely token at every step, but new token {step} "
                f"differs: got {out[:, T:].tolist()}, expected {expected[:, T:].tolist()}.{hint}"
            )


def greedy_way(model, V: int, bs: int) -> tuple[str, dict] | None:
    """How this generate decodes greedily, tried on a prompt that never needs cropping: the
    handout's temperature=0, else top_k=1 (at the default temperature), else None. A check
    about something else uses it, so that a temperature bug is charged once, by the checks
    on temperature."""
    idx = torch.randint(0, V, (2, 2))
    expected = greedy_continuation(model, idx, bs - 2, bs)
    for how, kwargs in (("temperature=0", dict(temperature=0)), ("top_k=1", dict(top_k=1))):
        try:
            out = model.generate(idx, bs - 2, **kwargs)
        except LearnerError:
            continue
        if isinstance(out, torch.Tensor) and out.shape == expected.shape and torch.equal(out, expected):
            return how, kwargs
    return None


@check("generate crops the context to the last block_size tokens", points=1)
def generate_crops_context(impl):
    V, bs = 10, 4
    model = new_gpt2(impl, block_size=bs, vocab_size=V, n_layer=1, n_head=2, n_embd=8)
    way = greedy_way(model, V, bs)
    if way is None:
        raise CheckFailure(
            "Cropping is judged on greedy decoding, and your generate decodes greedily neither with temperature=0 "
            f"nor with top_k=1, even on a prompt shorter than block_size={bs}. Fix the check \"{GREEDY_TITLE}\" "
            "first; this one is judged again once that passes."
        )
    how, kwargs = way
    idx = torch.randint(0, V, (2, 9))
    try:
        out = model.generate(idx, 5, **kwargs)
    except LearnerError as exc:
        raise CheckFailure(
            f"generate(idx, 5, {how}) with a 9-token prompt and block_size={bs} failed: {exc.describe()}\n"
            + cause("The model reads at most block_size tokens: crop the context to the last block_size tokens "
                    "(idx[:, -block_size:]) before each forward.")
        ) from None
    expect_tensor(out, f"generate(idx, 5, {how})", (2, 14), torch.int64)
    expected = greedy_continuation(model, idx, 5, bs)
    if not torch.equal(out, expected):
        raise CheckFailure(
            f"generate(idx, 5, {how}) with a 9-token prompt and block_size={bs} gave {out[:, 9:].tolist()}; "
            f"greedy on the last {bs} tokens gives {expected[:, 9:].tolist()}.\n"
            + cause("Crop the context to the last block_size tokens (idx[:, -block_size:]), the end of the sequence, "
                    "not its start.")
        )


@check("top_k sampling never picks a token outside the top k", points=2)
def generate_top_k(impl):
    V, bs, k, T, n = 16, 6, 3, 3, 8
    model = new_gpt2(impl, block_size=bs, vocab_size=V, n_layer=1, n_head=2, n_embd=16)
    # Larger embeddings (tied with the head) spread the logits, so the top 3 are a real restriction.
    state = model.state_dict()
    state["transformer.wte.weight"] = state["lm_head.weight"] = torch.randn(V, 16)
    model.load_state_dict(state)
    idx = torch.randint(0, V, (32, T))
    out = model.generate(idx, n, temperature=3.0, top_k=k)
    expect_tensor(out, f"generate(idx, {n}, temperature=3.0, top_k={k})", (32, T + n), torch.int64)
    for t in range(T, T + n):
        logits = logits_of(model, out[:, max(0, t - bs):t])[:, -1]
        rank = (logits > logits.gather(1, out[:, t:t + 1])).sum(1)
        if (rank >= k).any():
            b = int((rank >= k).nonzero()[0])
            raise CheckFailure(
                f"With top_k={k}, row {b} sampled token {int(out[b, t])} at position {t}, which is only number "
                f"{int(rank[b]) + 1} in order of likelihood there.\n"
                + cause("Your generate lets tokens outside the top k through: set every logit below the top_k-th "
                        "largest to -inf before the softmax (torch.topk(logits, k).values[:, [-1]] is the k-th largest "
                        "per row).")
            )


@check("temperature divides the logits: samples follow softmax(logits / temperature)", points=2)
def generate_temperature(impl):
    V, C, rows = 6, 8, 3000
    model = new_gpt2(impl, block_size=4, vocab_size=V, n_layer=1, n_head=2, n_embd=C)
    state = model.state_dict()
    state["transformer.wte.weight"] = state["lm_head.weight"] = 0.8 * torch.randn(V, C)
    model.load_state_dict(state)
    prompt = torch.randint(0, V, (1, 3))
    last = logits_of(model, prompt)[0, -1].double()
    for temperature in (0.5, 2.0):
        out = model.generate(prompt.expand(rows, 3).contiguous(), 1, temperature=temperature)
        expect_tensor(out, f"generate(idx, 1, temperature={temperature})", (rows, 4), torch.int64)
        counts = torch.bincount(out[:, -1].clamp(0, V - 1), minlength=V).double()
        seen = counts / rows

        def chi2(p):
            expected = p * rows
            return (((counts - expected) ** 2) / expected.clamp_min(1e-9)).sum().item()

        want = F.softmax(last / temperature, -1)
        if chi2(want) < 40:  # df = 5; a correct sampler exceeds 40 with probability below 1e-6
            continue
        candidates = (
            ("ignores temperature (samples from softmax(logits))", F.softmax(last, -1)),
            ("multiplies the logits by temperature instead of dividing", F.softmax(last * temperature, -1)),
            ("samples uniformly", torch.full((V,), 1.0 / V, dtype=torch.float64)),
        )
        found = next((why for why, p in candidates if chi2(p) < 40), None)
        how = ("Divide the last position's logits by temperature, then softmax and sample: below 1 sharpens the "
               "distribution, above 1 flattens it.")
        raise CheckFailure(
            f"With temperature={temperature}, {rows} samples of the next token came out with frequencies "
            f"{[round(x, 3) for x in seen.tolist()]}; softmax(logits / {temperature}) gives "
            f"{[round(x, 3) for x in want.tolist()]}.\n" + (cause(f"Your generate {found}. {how}") if found else how)
        )


def sampling_model(impl, V: int):
    """A small GPT2 whose tied embedding spreads the next token's probability over several ids
    (so that samples differ), and a batch of 4 two-token prompts."""
    model = new_gpt2(impl, block_size=6, vocab_size=V, n_layer=1, n_head=2, n_embd=8)
    state = model.state_dict()
    state["transformer.wte.weight"] = state["lm_head.weight"] = 0.3 * torch.randn(V, 8)
    model.load_state_dict(state)
    return model, torch.randint(0, V, (4, 2))


@check("a seeded generator makes sampling reproducible (and is the one used)", points=1)
def generate_uses_generator(impl):
    V = 14
    model, idx = sampling_model(impl, V)
    a = impl.probe(generate_seeded, model, idx, 8, seed=7, global_seed=1)
    b = impl.probe(generate_seeded, model, idx, 8, seed=7, global_seed=2)
    expect_tensor(a, "generate(idx, 8, generator=g)", (4, 10), torch.int64)
    if not torch.equal(a, b):
        raise CheckFailure(
            "generate(idx, 8, generator=torch.Generator().manual_seed(7)) gave different tokens when torch's global "
            f"seed changed ({a[:, 2:].tolist()} vs {b[:, 2:].tolist()}).\n"
            + cause("Your generate samples from the global random generator and ignores the one it is given. Pass it "
                    "on: torch.multinomial(probs, 1, generator=generator).")
        )
    c = impl.probe(generate_seeded, model, idx, 8, seed=8, global_seed=1)
    if torch.equal(a, c):
        raise CheckFailure("generate gave the same 32 sampled tokens with generators seeded 7 and 8.\n"
                           + cause("Your generate does not sample from the generator it is given: "
                                   "torch.multinomial(probs, 1, generator=generator)."))


# --- loading HuggingFace weights -----------------------------------------------------------------


def hf_twin(config, seed):
    """A random-weight transformers GPT2LMHeadModel of the given sizes (nothing is downloaded).

    Every weight is random, LayerNorm gains around 1 and biases included, so that a weight
    loaded into the wrong place changes the logits. activation_function='gelu' is the exact
    GELU of stage 07's MLP (GPT-2's original tanh approximation differs by < 1e-3).
    """
    try:
        from transformers import GPT2Config as HFConfig
        from transformers import GPT2LMHeadModel
    except ImportError:
        raise Skip("needs the transformers package, the oracle for this check (python course.py setup installs it)")

    hf_config = HFConfig(
        vocab_size=config["vocab_size"], n_positions=config["block_size"], n_embd=config["n_embd"],
        n_layer=config["n_layer"], n_head=config["n_head"], activation_function="gelu",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
    )
    torch.manual_seed(seed)
    hf = GPT2LMHeadModel(hf_config).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in hf.named_parameters():
            base = 1.0 if (".ln_" in name or "ln_f" in name) and name.endswith("weight") else 0.0
            p.copy_(base + 0.2 * torch.randn(p.shape, generator=gen))
    return hf


def expected_after_loading(name, hf_state):
    value = hf_state[name]
    return value.t() if name.endswith(CONV1D_WEIGHTS) else value


HF_SIZES = dict(block_size=16, vocab_size=37, n_layer=2, n_head=3, n_embd=12)


@check("load_hf_state_dict loads a HuggingFace GPT-2 (Conv1D weights transposed) and matches its logits", points=4)
def load_hf_matches_logits(impl):
    hf = hf_twin(HF_SIZES, seed=3)
    hf_state = {k: v.clone() for k, v in hf.state_dict().items()}
    model = new_gpt2(impl, **HF_SIZES)
    idx = torch.randint(0, HF_SIZES["vocab_size"], (2, HF_SIZES["block_size"]))
    # Tied before loading? (weight_tying judges the tying itself; here only loading may not undo it.)
    tied_before = impl.probe(tied_parameters, model, "transformer.wte.weight", "lm_head.weight", idx[:, :4],
                             idx[:, 1:5])["same_object"]
    try:
        model.load_hf_state_dict(hf_state)
    except LearnerError as exc:
        hint, text = "", str(exc.original).lower()
        if isinstance(exc.original, KeyError):
            hint = ("\nA name on one side is missing on the other. HuggingFace's state dict holds GPT-2's weights "
                    "under the same names as yours, plus lm_head.weight; your attention's causal-mask buffer is not "
                    "in it: take the names from the state dict you are given (or from self.named_parameters()), "
                    "not from your own state_dict with its buffers.")
        elif isinstance(exc.original, (RuntimeError, ValueError)) and ("size" in text or "shape" in text):
            hint = ("\nHuggingFace's GPT-2 keeps c_attn, c_proj and c_fc in Conv1D modules, whose weight is "
                    "(in_features, out_features): the transpose of nn.Linear's. Transpose those four weights "
                    "(value.t()) before copying.")
        raise CheckFailure(f"load_hf_state_dict(hf_model.state_dict()) failed: {exc.describe()}{hint}") from None
    state = model.state_dict()
    for name in hf_state:
        if name not in state:
            continue
        expected = expected_after_loading(name, hf_state)
        got = state[name]
        if got.shape == expected.shape and torch.allclose(got, expected):
            continue
        if name.endswith(CONV1D_WEIGHTS) and got.shape == hf_state[name].shape and torch.allclose(got, hf_state[name]):
            raise CheckFailure(
                f"After loading, {name} holds HuggingFace's tensor as it is, not transposed. It is square "
                f"{tuple(got.shape)}, so its shape cannot tell you to transpose it; transpose all four Conv1D "
                f"weights by name ({', '.join(CONV1D_WEIGHTS)}), whatever their shape."
            )
        assert_close(got, expected, f"{name} after load_hf_state_dict", rtol=0, atol=0,
                     hint="Copy every tensor of the state dict into the parameter of the same name.")
    with torch.no_grad():
        expected_logits = hf(idx).logits
    assert_close(logits_of(model, idx), expected_logits, "logits after loading, vs HuggingFace's", rtol=1e-4,
                 atol=1e-4, hint="The weights arrived where they belong, so the difference is in the computation: "
                                 "compare your block with HuggingFace's GPT2Block.")
    info = impl.probe(tied_parameters, model, "transformer.wte.weight", "lm_head.weight", idx[:, :4], idx[:, 1:5])
    if tied_before and not info["same_object"]:
        raise CheckFailure(
            "After load_hf_state_dict, transformer.wte.weight and lm_head.weight are no longer one tensor: loading "
            "replaced a parameter instead of copying into it. Copy in place: own[key].copy_(value) under "
            "torch.no_grad(), with own = self.state_dict()."
        )


@check("load_hf_state_dict skips HuggingFace's mask buffers and rejects a state dict that does not fit", points=1)
def load_hf_buffers_and_errors(impl):
    hf = hf_twin(HF_SIZES, seed=4)
    hf_state = {k: v.clone() for k, v in hf.state_dict().items()}
    bs = HF_SIZES["block_size"]
    legacy = dict(hf_state)  # older transformers versions saved a mask buffer in every attention layer
    for i in range(HF_SIZES["n_layer"]):
        legacy[f"transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(bs, bs, dtype=torch.bool)).view(1, 1, bs, bs)
        legacy[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    model = new_gpt2(impl, **HF_SIZES)
    try:
        model.load_hf_state_dict(legacy)
    except LearnerError as exc:
        raise CheckFailure(
            f"load_hf_state_dict failed on a state dict that holds HuggingFace's mask buffers "
            f"('transformer.h.0.attn.bias', 'transformer.h.0.attn.masked_bias'): {exc.describe()}\n"
            + (cause("Your loading takes the mask buffers for weights. They are not: skip keys ending in "
                     "'.attn.bias' or '.attn.masked_bias'.")
               if "attn.bias" in f"{exc.original} {failing_line(exc)}" or "masked_bias" in str(exc.original) else
               "They are not weights: skip keys ending in '.attn.bias' or '.attn.masked_bias'.")
        ) from None
    got = model.state_dict()["transformer.h.0.attn.c_attn.weight"]
    assert_close(got, hf_state["transformer.h.0.attn.c_attn.weight"].t(), "transformer.h.0.attn.c_attn.weight",
                 rtol=0, atol=0, hint="Skipping the mask buffers must not skip the weights.")
    incomplete = {k: v for k, v in hf_state.items() if k != "transformer.h.1.mlp.c_fc.weight"}
    try:
        new_gpt2(impl, **HF_SIZES).load_hf_state_dict(incomplete)
    except LearnerError as exc:
        if isinstance(exc.original, KeyError):
            return
        raise CheckFailure(f"With 'transformer.h.1.mlp.c_fc.weight' missing from the state dict, load_hf_state_dict "
                           f"raised {type(exc.original).__name__}; expected a KeyError naming the key.") from None
    raise CheckFailure(
        "load_hf_state_dict accepted a state dict without 'transformer.h.1.mlp.c_fc.weight' and left that weight "
        "random.\n" + cause("Your loading does not check that every parameter of the model is in the state dict: "
                            "raise a KeyError naming what is missing.")
    )


# --- general properties (grader/checks/properties.py) -----------------------------------------


def hf_layout_state_dict(config: dict, seed: int) -> dict:
    """A GPT-2 state dict laid out as HuggingFace's GPT2LMHeadModel saves it (Conv1D weights
    stored (in, out), lm_head.weight beside the tied wte), with random values. Built here from
    the sizes alone, so that it needs neither transformers nor the learner's names."""
    C, V = config["n_embd"], config["vocab_size"]
    shapes = {"transformer.wte.weight": (V, C), "transformer.wpe.weight": (config["block_size"], C)}
    for i in range(config["n_layer"]):
        for name, shape in (("ln_1.weight", (C,)), ("ln_1.bias", (C,)), ("attn.c_attn.weight", (C, 3 * C)),
                            ("attn.c_attn.bias", (3 * C,)), ("attn.c_proj.weight", (C, C)), ("attn.c_proj.bias", (C,)),
                            ("ln_2.weight", (C,)), ("ln_2.bias", (C,)), ("mlp.c_fc.weight", (C, 4 * C)),
                            ("mlp.c_fc.bias", (4 * C,)), ("mlp.c_proj.weight", (4 * C, C)), ("mlp.c_proj.bias", (C,))):
            shapes[f"transformer.h.{i}.{name}"] = shape
    shapes |= {"transformer.ln_f.weight": (C,), "transformer.ln_f.bias": (C,)}
    gen = torch.Generator().manual_seed(seed)
    state = {name: 0.2 * torch.randn(shape, generator=gen) for name, shape in shapes.items()}
    state["lm_head.weight"] = state["transformer.wte.weight"]  # HuggingFace saves the tied tensor under both names
    return state


def with_mask_buffers(state: dict, config: dict) -> dict:
    """`state` plus the causal-mask buffers older transformers versions saved in every attention layer."""
    bs, legacy = config["block_size"], dict(state)
    for i in range(config["n_layer"]):
        legacy[f"transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(bs, bs, dtype=torch.bool)).view(1, 1, bs, bs)
        legacy[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    return legacy


@check("forward, generate and load_hf_state_dict leave their inputs unchanged", points=1)
def inputs_unchanged(impl):
    V = HF_SIZES["vocab_size"]
    model = new_gpt2(impl, **HF_SIZES)
    gen = torch.Generator().manual_seed(3)
    idx, targets = torch.randint(0, V, (2, 6), generator=gen), torch.randint(0, V, (2, 6), generator=gen)
    assert_inputs_unchanged(impl, model, idx, targets, what="model(idx, targets)", names=("idx", "targets"))
    assert_inputs_unchanged(impl, model.generate, idx, 3, what="generate(idx, 3, temperature=0.8, top_k=5)",
                            names=("idx",), temperature=0.8, top_k=5)
    state = with_mask_buffers(hf_layout_state_dict(HF_SIZES, seed=5), HF_SIZES)
    assert_inputs_unchanged(impl, model.load_hf_state_dict, state, what="load_hf_state_dict(state_dict)",
                            names=("state_dict",))


@check("forward and generate follow the model's device and dtype (meta, float64): nothing made on a fixed device",
       points=1)
def follows_device_and_dtype(impl):
    V, bs = 13, 8
    model = new_gpt2(impl, block_size=bs, vocab_size=V, n_layer=1, n_head=2, n_embd=8)
    idx = torch.randint(0, V, (2, 5), generator=torch.Generator().manual_seed(4))
    assert_follows_device_and_dtype(impl, model, idx, idx, what="GPT2(idx, targets)")
    model.to(device="meta", dtype=torch.float64)  # generate is a method: the model moves first, as .to("cuda") would
    for how, kwargs in (("temperature=0", dict(temperature=0)), ("temperature=0.8, top_k=3", dict(temperature=0.8,
                                                                                                  top_k=3))):
        # bs new tokens after 5: the context is cropped on the way
        assert_follows_device_and_dtype(impl, model.generate, idx, bs, what=f"generate(idx, {bs}, {how})", **kwargs)


@check("sampling stays correct on very large logits (the tied embedding times 10 and 100)", points=1)
def generate_stable_on_large_logits(impl):
    V, C, bs, T, n = 12, 16, 8, 3, 4
    model = new_gpt2(impl, block_size=bs, vocab_size=V, n_layer=1, n_head=2, n_embd=C)
    gen = torch.Generator().manual_seed(6)
    embedding, idx = torch.randn(V, C, generator=gen), torch.randint(0, V, (8, T), generator=gen)
    state = model.state_dict()
    for scale in (10, 100):
        state["transformer.wte.weight"] = state["lm_head.weight"] = embedding * scale
        model.load_state_dict(state)
        what = f"generate(idx, {n}) with logits up to {logits_of(model, idx).abs().max().item():.0f}"
        try:
            out = impl.probe(generate_seeded, model, idx, n, seed=scale, global_seed=0)
        except LearnerError as exc:
            text = str(exc.original)
            overflow = "inf" in text or "nan" in text or "inf" in failing_line(exc) or "exp" in failing_line(exc)
            raise CheckFailure(f"{what} failed: {exc.describe()}" + (
                "\n" + cause("The probabilities you sample from hold inf or NaN: exp() of a large logit overflows "
                             "(exp(89) is already inf in float32). Use F.softmax, which subtracts each row's max "
                             "before exp().") if overflow else "")) from None
        expect_tensor(out, what, (8, T + n), torch.int64)
        for t in range(T, T + n):
            probs = F.softmax(logits_of(model, out[:, max(0, t - bs):t])[:, -1].double(), -1)
            picked = probs.gather(1, out[:, t:t + 1].clamp(0, V - 1))[:, 0]
            if (picked < 1e-9).any():
                b = int((picked < 1e-9).nonzero()[0])
                raise CheckFailure(
                    f"{what}: row {b} sampled token {int(out[b, t])} at position {t}, whose probability under "
                    f"softmax(logits) is {picked[b].item():.3g}; the likeliest token there has "
                    f"{probs[b].max().item():.3g}. Sample from F.softmax(logits, dim=-1), which stays exact for large "
                    "logits."
                )


@check("generate draws new samples on every call when no generator is given", points=1)
def generate_draws_anew(impl):
    V = 14
    model, idx = sampling_model(impl, V)
    first, second = model.generate(idx, 8), model.generate(idx, 8)
    expect_tensor(first, "generate(idx, 8)", (4, 10), torch.int64)
    if torch.equal(first, second):
        raise CheckFailure(
            "Two calls of generate(idx, 8) without a generator gave the same 32 sampled tokens.\n"
            + cause("Your generate makes its own seeded generator (or seeds torch) when none is given. Pass "
                    "generator=generator on to torch.multinomial as it is: None draws from PyTorch's global random "
                    "numbers, which move on after each call.")
        )


def adamw_second_step_ratio(beta1: float, beta2: float) -> float:
    """AdamW's second step over its first when the second step's gradient is zero (and the
    first's far above eps): m and v decay by beta1 and beta2, and bias correction divides by
    1 - beta^2, so the step shrinks by beta1 / (1 + beta1) * sqrt((1 + beta2) / beta2)."""
    return beta1 / (1 + beta1) * math.sqrt((1 + beta2) / beta2)


@check("configure_optimizers honours learning_rate and betas: its AdamW steps as they prescribe", points=1)
def optimizer_learning_rate_and_betas(impl):
    V, lr, betas = 20, 1e-2, (0.5, 0.6)
    model = new_gpt2(impl, block_size=8, vocab_size=V, n_layer=1, n_head=2, n_embd=8)
    gen = torch.Generator().manual_seed(9)
    idx, targets = torch.randint(0, V, (4, 8), generator=gen), torch.randint(0, V, (4, 8), generator=gen)
    call = f"configure_optimizers(weight_decay=0.0, learning_rate={lr}, betas={betas})"
    optimizer = model.configure_optimizers(weight_decay=0.0, learning_rate=lr, betas=betas, device_type="cpu")
    before = model.state_dict()
    # A backward of the loss (with a step of the probe's own AdamW at lr=0, which moves nothing):
    # the gradients stay on the parameters for the optimizer under test.
    impl.probe(train_steps, model, idx, targets, 1, 0.0)
    optimizer.step()
    first = model.state_dict()
    model.zero_grad(set_to_none=False)  # a second step on zero gradients moves by the moments alone
    optimizer.step()
    second = model.state_dict()
    # Judged from the weights alone: AdamW's first step is learning_rate * g / (|g| + eps), so
    # learning_rate wherever |g| is far above eps, and the second step's ratio to it is set by the betas.
    steps = [(first[k] - before[k]).double().flatten() for k in before if before[k].is_floating_point()]
    seconds = [(second[k] - first[k]).double().flatten() for k in before if before[k].is_floating_point()]
    step1, step2 = torch.cat(steps), torch.cat(seconds)
    moved = step1[step1 != 0].abs()
    if moved.numel() == 0:
        raise CheckFailure(f"One optimizer.step() of {call} after backward moved no weight: the optimizer does not "
                           "hold the model's parameters.")
    size = moved.median().item()  # the median: robust to the few weights whose gradient is near eps
    if abs(size - lr) > 1e-2 * lr:
        raise CheckFailure(
            f"The first step of {call} moved the weights by {size:.4g} (the median over the weights it moved); "
            f"AdamW's first step is learning_rate = {lr} wherever the gradient is not tiny.\n"
            + cause("Your configure_optimizers does not pass its learning_rate on: torch.optim.AdamW(..., "
                    "lr=learning_rate).")
        )
    full = step1.abs() > (1 - 1e-4) * lr  # the gradient is far above eps there
    ratio = (step2[full] / step1[full]).median().item()
    want = adamw_second_step_ratio(*betas)
    if not abs(ratio - want) <= 5e-3 * want:  # a NaN ratio (no weight took a full first step) fails too
        candidates = (((0.9, 0.95), "uses betas=(0.9, 0.95), the default of configure_optimizers, whatever betas it "
                                    "is given"),
                      ((0.9, 0.999), "passes no betas to AdamW, so AdamW's own default (0.9, 0.999) applies"),
                      ((betas[1], betas[0]), "swaps beta1 and beta2"))
        found = next((why for pair, why in candidates
                      if abs(ratio - adamw_second_step_ratio(*pair)) < 2e-3 * adamw_second_step_ratio(*pair)), None)
        raise CheckFailure(
            f"After one step on the loss's gradient and one on zero gradients, {call}'s second step is {ratio:.4f} "
            f"times its first; with betas={betas} AdamW's is {want:.4f}.\n"
            + cause(f"Your configure_optimizers {found}: pass betas=betas to torch.optim.AdamW." if found else
                    "Pass betas=betas to torch.optim.AdamW, and nothing that changes its moments.")
        )


@check("load_hf_state_dict refuses a state dict that is not this model's: KeyError for a weight it lacks, "
       "ValueError for a wrong shape", points=1)
def load_hf_refuses_foreign(impl):
    C, bs = HF_SIZES["n_embd"], HF_SIZES["block_size"]
    state = hf_layout_state_dict(HF_SIZES, seed=7)
    extra = "transformer.h.2.mlp.c_fc.weight"
    deeper = state | {extra: torch.randn(C, 4 * C)}  # a weight of a 3-layer model
    raised = expect_raises(
        lambda: new_gpt2(impl, **HF_SIZES).load_hf_state_dict(deeper), KeyError,
        f"load_hf_state_dict of a state dict holding {extra!r}, which this 2-layer model lacks,",
        hint="\n" + cause("A weight this model lacks means the state dict belongs to another model: compare its keys "
                          "with your model's and raise a KeyError naming the key, rather than skip it."))
    if extra not in str(raised.original):
        raise CheckFailure(f"load_hf_state_dict raised KeyError({str(raised.original)[:120]}) for a state dict "
                           f"holding {extra!r}, which this model lacks; the error should name that key.")
    longer = state | {"transformer.wpe.weight": torch.randn(2 * bs, C)}  # a model with a longer context
    expect_raises(
        lambda: new_gpt2(impl, **HF_SIZES).load_hf_state_dict(longer), ValueError,
        f"load_hf_state_dict of a state dict whose transformer.wpe.weight is {(2 * bs, C)} (this model's is "
        f"{(bs, C)})",
        hint="\n" + cause("Compare each shape (after transposing the Conv1D weights) with your parameter's before "
                          "copying, and raise a ValueError naming the key: copy_ alone raises a RuntimeError, or "
                          "broadcasts a shape that fits silently."))
