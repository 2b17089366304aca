"""Stage 08, hidden checks: the learner's GPT2 against the reference's, with the same weights."""
import torch
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

from grader import check
from grader.checks import CheckFailure, assert_close, assert_same_language_model, expect_tensor, share_weights
from grader.strategies import GPT_EDGE_SIZES, gpt_sizes, split_sizes
from grader.probes import generate_seeded, optimizer_groups, tensor_layout, train_steps

CONV1D_WEIGHTS = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def twins(impl, ref, config):
    """The learner's GPT2 and the reference's, in eval mode, holding the reference's weights."""
    ours = impl.module("gpt2").GPT2(impl.module("gpt2").GPT2Config(**config))
    theirs = ref.module("gpt2").GPT2(ref.module("gpt2").GPT2Config(**config))
    share_weights(ours, theirs, "Your GPT2", "Keep stage 07's names.")
    return ours, theirs


@check("logits and loss equal the reference's with the same weights", points=2)
@settings(max_examples=6)
@given(sizes=gpt_sizes(max_layers=3), seed=st.integers(0, 1000))
@example(sizes=GPT_EDGE_SIZES, seed=0)
def logits_match_reference(impl, ref, sizes, seed):
    config, batch, T = split_sizes(sizes)
    ours, theirs = twins(impl, ref, config)
    assert_same_language_model(ours, theirs, config["vocab_size"], batch, T, seed,
                               hint="Same weights, same input: the difference is in how the model computes.")


@check("the parameters (names, shapes, count) equal the reference's", points=1)
def parameters_match_reference(impl, ref):
    config = dict(block_size=10, vocab_size=23, n_layer=3, n_head=2, n_embd=8, dropout=0.0, bias=False)
    ours = impl.module("gpt2").GPT2(impl.module("gpt2").GPT2Config(**config))
    theirs = ref.module("gpt2").GPT2(ref.module("gpt2").GPT2Config(**config))
    shapes = impl.probe(tensor_layout, ours)["parameters"]
    ref_shapes = ref.probe(tensor_layout, theirs)["parameters"]
    if shapes != ref_shapes:
        diff = sorted(set(shapes.items()) ^ set(ref_shapes.items()))
        raise CheckFailure(f"Your GPT2 (bias=False) has parameters that differ from the reference's: {diff[:4]}.")
    if ours.num_parameters() != theirs.num_parameters():
        raise CheckFailure(f"num_parameters() is {ours.num_parameters()}, the reference's {theirs.num_parameters()}.")


@check("seeded sampling with temperature and top_k equals the reference's", points=1)
def sampling_matches_reference(impl, ref):
    config = dict(block_size=6, vocab_size=14, n_layer=2, n_head=2, n_embd=12, dropout=0.0, bias=True)
    ours, theirs = twins(impl, ref, config)
    idx = torch.randint(0, 14, (3, 9))
    kwargs = dict(temperature=0.8, top_k=5)
    out = impl.probe(generate_seeded, ours, idx, 10, 11, 0, **kwargs)
    ref_out = ref.probe(generate_seeded, theirs, idx, 10, 11, 0, **kwargs)
    expect_tensor(out, "generate(idx, 10, temperature=0.8, top_k=5, generator=g)", tuple(ref_out.shape), torch.int64)
    if not torch.equal(out, ref_out):
        raise CheckFailure(
            f"With the same weights and a generator seeded 11, generate gave {out[:, 9:].tolist()}, the reference "
            f"{ref_out[:, 9:].tolist()}. Crop to block_size, take the last position, divide by temperature, keep the "
            "top_k, softmax, then torch.multinomial(probs, 1, generator=generator)."
        )


@check("the optimizer's groups equal the reference's", points=1)
def optimizer_matches_reference(impl, ref):
    config = dict(block_size=8, vocab_size=20, n_layer=2, n_head=2, n_embd=8, dropout=0.0, bias=True)
    ours = impl.module("gpt2").GPT2(impl.module("gpt2").GPT2Config(**config))
    theirs = ref.module("gpt2").GPT2(ref.module("gpt2").GPT2Config(**config))

    def decay_by_name(impl_, model):
        info = impl_.probe(optimizer_groups, model, model.configure_optimizers(0.05, 1e-3, (0.8, 0.9), "cpu"))
        return {name: g["weight_decay"] for g in info["groups"] for name in g["names"]}

    got, expected = decay_by_name(impl, ours), decay_by_name(ref, theirs)
    if got != expected:
        diff = sorted(k for k in set(got) | set(expected) if got.get(k) != expected.get(k))
        raise CheckFailure(
            f"Weight decay per parameter differs from the reference's at {diff[:4]}: yours "
            f"{[got.get(k) for k in diff[:4]]}, the reference's {[expected.get(k) for k in diff[:4]]}."
        )


# The three checks below run two models per example through many calls (each a round trip in
# isolated mode): a failing example is reported as drawn, not shrunk, so that a bug costs seconds.
NO_SHRINKING = (Phase.explicit, Phase.reuse, Phase.generate)


@check("generate equals the reference's on drawn sizes, prompts, temperatures and top_k (seeded)", points=1)
@settings(max_examples=3, phases=NO_SHRINKING)
@given(sizes=gpt_sizes(), prompt=st.integers(1, 14), new=st.integers(1, 5),
       temperature=st.sampled_from([0, 0.5, 1.0, 1.7]), top_k=st.sampled_from([None, 1, 2, 5]),
       seed=st.integers(0, 1000))
def generate_matches_reference(impl, ref, sizes, prompt, new, temperature, top_k, seed):
    config, batch, _ = split_sizes(sizes)
    ours, theirs = twins(impl, ref, config)
    V = config["vocab_size"]
    idx = torch.randint(0, V, (batch, prompt), generator=torch.Generator().manual_seed(seed))
    # top_k is documented for 1..vocab_size; a prompt longer than block_size is cropped on the way.
    kwargs = dict(temperature=temperature, top_k=None if top_k is None else min(top_k, V))
    call = f"generate(idx of {prompt} tokens, {new}, temperature={temperature}, top_k={kwargs['top_k']}, generator=g)"
    out = impl.probe(generate_seeded, ours, idx, new, seed, 0, **kwargs)
    expected = ref.probe(generate_seeded, theirs, idx, new, seed, 0, **kwargs)
    expect_tensor(out, call, tuple(expected.shape), torch.int64)
    if not torch.equal(out, expected):
        step = int((out != expected).any(0).nonzero()[0]) - prompt
        raise CheckFailure(
            f"With the reference's weights (block_size={config['block_size']}), {call} differs from the reference's "
            f"from new token {step} on: yours {out[:, prompt:].tolist()}, the reference's "
            f"{expected[:, prompt:].tolist()}."
            + (" The prompt itself changed." if step < 0 else "")
        )


@check("configure_optimizers' AdamW takes the reference's steps, for drawn weight decay, learning rate and betas",
       points=1)
@settings(max_examples=2, phases=NO_SHRINKING)
@given(weight_decay=st.sampled_from([0.0, 0.1, 1.0]), lr=st.sampled_from([1e-2, 5e-2]),
       betas=st.sampled_from([(0.9, 0.95), (0.5, 0.7), (0.8, 0.99)]), bias=st.booleans(), seed=st.integers(0, 1000))
@example(weight_decay=0.1, lr=5e-2, betas=(0.5, 0.7), bias=True, seed=0)
def optimizer_steps_match_reference(impl, ref, weight_decay, lr, betas, bias, seed):
    config = dict(block_size=6, vocab_size=13, n_layer=1, n_head=2, n_embd=8, dropout=0.0, bias=bias)
    ours, theirs = twins(impl, ref, config)
    gen = torch.Generator().manual_seed(seed)
    idx, targets = torch.randint(0, 13, (3, 6), generator=gen), torch.randint(0, 13, (3, 6), generator=gen)

    def two_steps(side, model):
        optimizer = model.configure_optimizers(weight_decay, lr, betas, "cpu")
        # A backward of the loss (the probe's own AdamW at lr=0 moves nothing); then a step on
        # those gradients and one on zero gradients, which shows the moments and the decay.
        side.probe(train_steps, model, idx, targets, 1, 0.0)
        optimizer.step()
        model.zero_grad(set_to_none=False)
        optimizer.step()
        return model.state_dict()

    got, expected = two_steps(impl, ours), two_steps(ref, theirs)
    call = f"configure_optimizers({weight_decay}, {lr}, {betas})"
    for name, value in expected.items():
        if name in got and value.is_floating_point():
            assert_close(got[name], value, f"{name} after two steps of {call} (bias={bias})", rtol=1e-5, atol=1e-3 * lr,
                         hint="Same weights, same gradients: the optimizer differs. Check lr, betas and which group "
                              "(weight decay or none) each parameter is in.")


@check("load_hf_state_dict and num_parameters equal the reference's on drawn sizes", points=1)
@settings(max_examples=2, phases=NO_SHRINKING)
@given(sizes=gpt_sizes(max_layers=3), seed=st.integers(0, 1000))
@example(sizes=GPT_EDGE_SIZES, seed=0)
def loading_matches_reference(impl, ref, sizes, seed):
    config, batch, T = split_sizes(sizes)
    ours, theirs = twins(impl, ref, config)
    count, expected_count = ours.num_parameters(), theirs.num_parameters()
    if type(count) is not int or count != expected_count:
        raise CheckFailure(f"GPT2Config({config}): num_parameters() returned {count!r}, the reference "
                           f"{expected_count:,}.")
    # HuggingFace's layout from a fresh reference model: its weights and biases (not the reference's
    # mask buffer, 'tril'), with the four Conv1D weights transposed to (in, out).
    torch.manual_seed(seed)
    source = ref.module("gpt2").GPT2(ref.module("gpt2").GPT2Config(**config)).state_dict()
    hf_state = {k: (v.t() if k.endswith(CONV1D_WEIGHTS) else v) for k, v in source.items()
                if k.endswith((".weight", ".bias"))}
    ours.load_hf_state_dict(hf_state)
    theirs.load_hf_state_dict(hf_state)
    state, expected = ours.state_dict(), theirs.state_dict()
    for name in hf_state:
        if name in state:
            assert_close(state[name], expected[name], f"{name} after load_hf_state_dict", rtol=0, atol=0,
                         hint="Copy each weight into the parameter of the same name, the four Conv1D weights "
                              "(attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj) transposed.")
    assert_same_language_model(ours, theirs, config["vocab_size"], batch, T, seed,
                               hint="The weights were loaded alike, so the difference is in the computation.")
