"""Stage 09, hidden checks: the learner's pieces against the reference's, and the GPU step's speed."""
import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grader import check
from grader.checks import (
    CheckFailure,
    assert_close,
    assert_same_language_model,
    expect_tensor,
    measure_ratio,
    share_weights,
)
from grader.checks.speed import fresh_batches, needs_cuda, speed_verdict
from grader.probes import TinyLM, make_step_trainer, run_train_step, with_environment


@check("the learning-rate schedule equals the reference's at every step", points=1)
@settings(max_examples=5)
@given(warmup=st.integers(0, 20), decay=st.integers(1, 60))
def lr_matches_reference(impl, ref, warmup, decay):
    ours, theirs = impl.module("train").get_lr, ref.module("train").get_lr
    max_steps = warmup + decay
    for step in range(max_steps + 3):
        got, expected = ours(step, warmup, max_steps, 1e-3, 1e-4), theirs(step, warmup, max_steps, 1e-3, 1e-4)
        if not isinstance(got, float | int) or not math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-15):
            raise CheckFailure(f"get_lr({step}, {warmup}, {max_steps}, 1e-3, 1e-4) returned {got!r}; the reference "
                               f"gives {expected!r}.")


@check("two training steps (accumulation, clipping, lr) give the reference's losses, norms and gradients", points=2)
def train_step_matches_reference(impl, ref):
    gen = torch.Generator().manual_seed(21)
    steps = [[(torch.randint(0, 11, (2, 4), generator=gen), torch.randint(0, 11, (2, 4), generator=gen))
              for _ in range(3)] for _ in range(2)]
    kwargs = dict(optimizer_lr=0.5, max_norm=0.3, lr=0.2, amp_dtype=None)
    ours = impl.probe(run_train_step, impl.module("train").train_step, TinyLM(seed=21), steps, **kwargs)
    theirs = ref.probe(run_train_step, ref.module("train").train_step, TinyLM(seed=21), steps, **kwargs)
    for i, (got, expected) in enumerate(zip(ours["returned"], theirs["returned"])):
        if type(got) is not tuple or len(got) != 2 or not all(isinstance(v, float) for v in got):
            raise CheckFailure(f"train_step returned {got!r}; expected (loss, norm) as two floats.")
        for what, g, e in (("loss", got[0], expected[0]), ("norm", got[1], expected[1])):
            if not math.isclose(g, e, rel_tol=1e-4, abs_tol=1e-6):
                raise CheckFailure(f"Step {i + 1}: train_step returned {what} {g:.6g}; the reference returns {e:.6g}.")
    for n, g in theirs["steps"][1]["grads"].items():
        assert_close(ours["steps"][1]["grads"].get(n), g, f"the gradient of {n} at step 2", rtol=1e-4, atol=1e-6)


@check("FastGPT2's logits and loss equal the reference's with the same weights", points=2)
def fast_gpt2_matches_reference(impl, ref):
    sizes = dict(block_size=8, vocab_size=70, n_layer=2, n_head=2, n_embd=8)
    ours = impl.module("train").FastGPT2(impl.module("train").GPT2Config(**sizes))
    theirs = ref.module("train").FastGPT2(ref.module("train").GPT2Config(**sizes))
    weights = theirs.state_dict()
    own = ours.state_dict()
    missing = sorted(k for k in weights if k not in own)
    if missing:
        raise CheckFailure(f"Your FastGPT2 lacks {', '.join(missing[:4])}, which the reference has.")
    ours.load_state_dict({k: v for k, v in weights.items() if k in own}, strict=False)
    ours.eval(), theirs.eval()
    idx, targets = torch.randint(0, 70, (3, 8)), torch.randint(0, 70, (3, 8))
    logits, loss = ours(idx, targets)
    ref_logits, ref_loss = theirs(idx, targets)
    assert_close(logits, ref_logits, "FastGPT2's logits", rtol=1e-4, atol=1e-5)
    expect_tensor(loss, "FastGPT2's loss", (), torch.float32)
    assert_close(loss, ref_loss, "FastGPT2's loss", rtol=1e-5, atol=1e-6)


STEP_MIN_TOKENS_RATIO = 0.85  # benchmarks/GPU.md, "The training step against the reference"
GPT2_SMALL = dict(block_size=1024, vocab_size=50257, n_layer=12, n_head=12, n_embd=768)


def step_verdict(impl, ref, device="cuda", sizes=GPT2_SMALL, batch=8, T=1024, repeats=9, backend="inductor"):
    """The learner's compiled bf16 training step against the reference's, both built the same way."""
    ours = impl.probe(make_step_trainer, impl.module("train"), dict(sizes), batch, T, device=device, backend=backend)
    theirs = ref.probe(make_step_trainer, ref.module("train"), dict(sizes), batch, T, device=device, backend=backend)
    # New batches for every timed step, from a secret seed: the same for both sides.
    result = measure_ratio(ours.step, theirs.step, repeats=repeats, warmup=1, device=device,
                           inputs=lambda gen: fresh_batches(gen, sizes["vocab_size"], batch, T))
    tokens = batch * T
    return speed_verdict(
        result, 1 / STEP_MIN_TOKENS_RATIO,
        f"Your training step (GPT-2 {sizes['n_layer']} layers, B={batch}, T={T}, bf16, compiled; "
        f"{tokens / result.learner_seconds:,.0f} tokens/s vs the reference's {tokens / result.reference_seconds:,.0f})",
        hint=f"At least {STEP_MIN_TOKENS_RATIO:g}x the reference's tokens per second is expected. Check each "
             "speed-up: TF32 on, autocast around forward and loss, flash attention with is_causal=True, the padded "
             "vocabulary, fused AdamW, and no .item() or graph break inside the step's micro-batch loop.",
    )


@check("on a GPU: the GPT-2 124M training step reaches 0.85x the reference's tokens per second", points=2)
def gpu_step_speed_vs_reference(impl, ref):
    needs_cuda((8, 0), "Ampere or newer")  # as the public GPU checks: bf16 and flash need it
    step_verdict(impl, ref).enforce()


# check id -> (the function that measures it, its arguments for a CPU smoke run), as in public.py.
GPU_CHECKS = {
    "gpu_step_speed_vs_reference": (step_verdict, dict(device="cpu", sizes=dict(block_size=16, vocab_size=65, n_layer=1,
                                                       n_head=2, n_embd=16), batch=2, T=16, repeats=3,
                                                   backend="aot_eager")),
}


# --- every public function against the reference, on drawn inputs ---------------------------------


@check("CausalSelfAttention equals the reference's with the same weights, over drawn sizes", points=1)
@settings(max_examples=4)
@given(n_head=st.integers(1, 4), hs=st.integers(1, 4), T=st.integers(1, 9), batch=st.integers(1, 3),
       bias=st.booleans(), seed=st.integers(0, 1000))
def attention_matches_reference(impl, ref, n_head, hs, T, batch, bias, seed):
    C = n_head * hs
    ours = impl.module("train").CausalSelfAttention(C, n_head, T, 0.0, bias)
    theirs = ref.module("train").CausalSelfAttention(C, n_head, T, 0.0, bias)
    share_weights(ours, theirs, "Your CausalSelfAttention", "Keep stage 06's c_attn and c_proj.")
    x = torch.randn(batch, T, C, generator=torch.Generator().manual_seed(seed))
    assert_close(ours(x), theirs(x), f"CausalSelfAttention(x) with n_head={n_head}, T={T}, bias={bias}",
                 rtol=1e-4, atol=1e-5)


@check("padded_vocab_size equals the reference's for drawn sizes and multiples", points=1)
@settings(max_examples=20)
@given(vocab_size=st.integers(1, 100_000), multiple=st.integers(1, 256))
def padded_vocab_size_matches_reference(impl, ref, vocab_size, multiple):
    got = impl.module("train").padded_vocab_size(vocab_size, multiple)
    expected = ref.module("train").padded_vocab_size(vocab_size, multiple)
    if type(got) is not int or got != expected:
        raise CheckFailure(f"padded_vocab_size({vocab_size}, {multiple}) returned {got!r}; the reference gives "
                           f"{expected}.")


@check("FastGPT2 equals the reference's over drawn sizes and vocab_multiple", points=1)
@settings(max_examples=3)
@given(V=st.integers(2, 90), multiple=st.sampled_from([1, 7, 32, 64, 128]), n_layer=st.integers(1, 2),
       n_head=st.integers(1, 3), T=st.integers(1, 6), seed=st.integers(0, 1000))
def fast_gpt2_matches_reference_drawn(impl, ref, V, multiple, n_layer, n_head, T, seed):
    sizes = dict(block_size=6, vocab_size=V, n_layer=n_layer, n_head=n_head, n_embd=2 * n_head)
    ours = impl.module("train").FastGPT2(impl.module("train").GPT2Config(**sizes), vocab_multiple=multiple)
    theirs = ref.module("train").FastGPT2(ref.module("train").GPT2Config(**sizes), vocab_multiple=multiple)
    for what in ("vocab_size", "config.vocab_size"):
        got = ours.vocab_size if what == "vocab_size" else ours.config.vocab_size
        expected = theirs.vocab_size if what == "vocab_size" else theirs.config.vocab_size
        if got != expected:
            raise CheckFailure(f"FastGPT2 with vocab_size={V}, vocab_multiple={multiple}: its {what} is {got!r}, "
                               f"the reference's {expected!r}.")
    share_weights(ours, theirs, "Your FastGPT2", "Build it on stage 08's GPT2, with GPT-2's names.")
    assert_same_language_model(ours, theirs, V, 2, T, seed, hint="")


@check("make_optimizer's groups and settings equal the reference's", points=1)
@settings(max_examples=4)
@given(weight_decay=st.sampled_from([0.0, 0.01, 0.1, 0.3]), learning_rate=st.floats(1e-5, 1e-2),
       device_type=st.sampled_from(["cpu", "cuda"]))
def make_optimizer_matches_reference(impl, ref, weight_decay, learning_rate, device_type):
    sizes = dict(block_size=4, vocab_size=10, n_layer=2, n_head=2, n_embd=4)

    def summary(side):
        train = side.module("train")
        optimizer = train.make_optimizer(train.FastGPT2(train.GPT2Config(**sizes)), weight_decay, learning_rate,
                                         device_type)
        groups = sorted((g["weight_decay"], len(g["params"]), sum(p.numel() for p in g["params"]), g["lr"])
                        for g in optimizer.param_groups)
        options = {k: optimizer.defaults.get(k) for k in ("lr", "betas", "eps", "fused")}
        options["betas"] = tuple(options["betas"] or ())
        options["fused"] = bool(options["fused"])
        return groups, options

    (groups, chosen), (ref_groups, ref_chosen) = summary(impl), summary(ref)
    if groups != ref_groups:
        raise CheckFailure(f"make_optimizer(model, {weight_decay}, {learning_rate:.3g}, {device_type!r}) made groups "
                           f"(weight decay, tensors, numbers, lr) {groups}; the reference {ref_groups}.")
    for key, value in ref_chosen.items():
        got = chosen[key]
        same = math.isclose(got, value) if isinstance(value, float) and isinstance(got, float) else got == value
        if not same:
            raise CheckFailure(f"make_optimizer(model, {weight_decay}, {learning_rate:.3g}, {device_type!r}) made an "
                               f"AdamW with {key}={got!r}; the reference's has {key}={value!r}.")


@check("train_step equals the reference's over drawn micro-batches, max_norm and lr", points=1)
@settings(max_examples=3)
@given(k=st.integers(1, 3), batch=st.integers(1, 3), T=st.integers(1, 4), max_norm=st.floats(0.05, 5.0),
       lr=st.one_of(st.none(), st.floats(0.01, 1.0)), seed=st.integers(0, 1000))
def train_step_matches_reference_drawn(impl, ref, k, batch, T, max_norm, lr, seed):
    gen = torch.Generator().manual_seed(seed)
    steps = [[(torch.randint(0, 11, (batch, T), generator=gen), torch.randint(0, 11, (batch, T), generator=gen))
              for _ in range(k)] for _ in range(2)]
    kwargs = dict(optimizer_lr=0.3, max_norm=max_norm, lr=lr, amp_dtype=None)
    ours = impl.probe(run_train_step, impl.module("train").train_step, TinyLM(seed=seed), steps, **kwargs)
    theirs = ref.probe(run_train_step, ref.module("train").train_step, TinyLM(seed=seed), steps, **kwargs)
    call = f"train_step with k={k}, max_norm={max_norm:.3g}, lr={lr if lr is None else f'{lr:.3g}'}"
    for i, (got, expected) in enumerate(zip(ours["returned"], theirs["returned"])):
        if type(got) is not tuple or len(got) != 2 or not all(isinstance(v, float) for v in got):
            raise CheckFailure(f"{call} returned {got!r}; expected (loss, norm) as two floats.")
        for what, g, e in (("loss", got[0], expected[0]), ("norm", got[1], expected[1])):
            if not math.isclose(g, e, rel_tol=1e-4, abs_tol=1e-6):
                raise CheckFailure(f"Step {i + 1}: {call} returned {what} {g:.6g}; the reference returns {e:.6g}.")
    for i, (got, expected) in enumerate(zip(ours["steps"], theirs["steps"])):
        for name, grad in expected["grads"].items():
            assert_close(got["grads"].get(name), grad, f"{call}: the gradient of {name} at step {i + 1}",
                         rtol=1e-4, atol=1e-6)
        if not all(math.isclose(a, b) for a, b in zip(got["lrs"], expected["lrs"])):
            raise CheckFailure(f"{call}: the optimizer stepped with learning rates {got['lrs']} at step {i + 1}; the "
                               f"reference's {expected['lrs']}.")


@check("ddp_env equals the reference's for drawn environments", points=1)
@settings(max_examples=6)
@given(rank=st.one_of(st.none(), st.integers(0, 63)), local_rank=st.one_of(st.none(), st.integers(0, 7)),
       world_size=st.one_of(st.none(), st.integers(1, 64)))
def ddp_env_matches_reference(impl, ref, rank, local_rank, world_size):
    env = {"RANK": rank, "LOCAL_RANK": local_rank, "WORLD_SIZE": world_size}
    env = {k: None if v is None else str(v) for k, v in env.items()}
    got = impl.probe(with_environment, impl.module("train").ddp_env, env)
    expected = ref.probe(with_environment, ref.module("train").ddp_env, env)
    if type(got) is not tuple or got != expected or not all(type(v) is int for v in got):
        shown = ", ".join(f"{k}={v}" for k, v in env.items() if v is not None) or "none of the variables set"
        raise CheckFailure(f"ddp_env() with {shown} returned {got!r}; the reference gives {expected}.")
