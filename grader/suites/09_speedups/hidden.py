"""Stage 09, hidden checks: the learner's pieces against the reference's, and the GPU step's speed."""
import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grader import check
from grader.checks import CheckFailure, assert_close, expect_tensor, measure_ratio
from grader.checks.speed import fresh_batches, needs_cuda, speed_verdict
from grader.probes import TinyLM, make_step_trainer, run_train_step


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
