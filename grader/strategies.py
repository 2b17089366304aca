"""Hypothesis strategies that several stages' suites draw from: sizes that reach the edges
learners miss (one position, a full context, odd head counts, contexts longer than n_embd)."""
from __future__ import annotations

from hypothesis import strategies as st


@st.composite
def gpt_sizes(draw, max_layers: int = 2) -> dict:
    """A GPT's config fields (block_size, vocab_size, n_layer, n_head, n_embd, bias) plus the
    batch and T of an input: T is 1, block_size or half of it; block_size may exceed n_embd."""
    n_head = draw(st.sampled_from([1, 2, 3, 5]))
    n_embd = n_head * draw(st.integers(1, 4))
    block_size = draw(st.integers(1, 12))
    T = draw(st.sampled_from([1, block_size, max(1, block_size // 2)]))
    return dict(
        block_size=block_size, vocab_size=draw(st.integers(2, 30)), n_layer=draw(st.integers(1, max_layers)),
        n_head=n_head, n_embd=n_embd, batch=draw(st.integers(1, 3)), T=T, bias=draw(st.booleans()),
    )


# Always tried as well: an odd head count, a full context longer than n_embd, batch 1.
GPT_EDGE_SIZES = dict(block_size=16, vocab_size=11, n_layer=2, n_head=3, n_embd=6, batch=1, T=16, bias=True)


def split_sizes(sizes: dict) -> tuple[dict, int, int]:
    """`gpt_sizes`' draw as (the config fields, batch, T)."""
    config = {k: v for k, v in sizes.items() if k not in ("batch", "T")}
    return config, sizes["batch"], sizes["T"]
