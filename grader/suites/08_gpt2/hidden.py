"""Stage 08, hidden checks: the learner's GPT2 against the reference's, with the same weights."""
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from grader import check
from grader.checks import CheckFailure, assert_same_language_model, expect_tensor, share_weights
from grader.strategies import GPT_EDGE_SIZES, gpt_sizes, split_sizes
from grader.probes import generate_seeded, optimizer_groups, tensor_layout


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
