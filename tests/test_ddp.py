"""The reference trainer (stage 09) under DistributedDataParallel gives the single-process result.

Two processes on this CPU, gloo backend, meeting through a file (no network, not even a
port): each takes its half of every micro-batch and runs the reference `train_step` on a
DDP-wrapped FastGPT2. Their loss (all-reduced by train_step), gradient norm and gradients
(as the optimizer sees them, after DDP's all-reduce) must equal those of one process running
the same step on the whole global batch.
"""
from __future__ import annotations

import sys

import pytest
import torch

from conftest import ROOT

STAGES = ["09_speedups", "08_gpt2", "07_layernorm", "06_multihead"]
SIZES = dict(block_size=8, vocab_size=50, n_layer=2, n_head=2, n_embd=16)
WORLD, MICRO, ROWS, T = 2, 3, 4, 8  # 3 micro-batches of 4 rows: 2 rows per process each


def _reference():
    sys.path[:0] = [str(ROOT), *(str(ROOT / "solutions" / s) for s in STAGES)]
    import train

    return train


def _global_batches():
    gen = torch.Generator().manual_seed(0)
    V = SIZES["vocab_size"]
    return [(torch.randint(0, V, (ROWS, T), generator=gen), torch.randint(0, V, (ROWS, T), generator=gen))
            for _ in range(MICRO)]


def _step(model, named, batches):
    from grader.probes import RecordingSGD

    train = sys.modules["train"]
    optimizer = RecordingSGD(named, lr=0.0)
    loss, norm = train.train_step(model, optimizer, batches, max_norm=1e9, amp_dtype=None)
    return {"loss": loss, "norm": norm, "grads": optimizer.steps[0]["grads"]}


def _worker(rank: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    train = _reference()
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(0)
        model = train.FastGPT2(train.GPT2Config(**SIZES))
        share = ROWS // WORLD
        local = [(x[rank * share:(rank + 1) * share], y[rank * share:(rank + 1) * share]) for x, y in _global_batches()]
        result = _step(DDP(model), list(model.named_parameters()), local)
        torch.save(result, f"{out}.{rank}")
    finally:
        torch.distributed.destroy_process_group()


@pytest.fixture
def clean_imports():
    """The reference's stage modules are imported by plain name: leave no trace for other tests."""
    saved = list(sys.path)
    yield
    sys.path[:] = saved
    for name in ("train", "gpt2", "gpt", "multihead"):
        sys.modules.pop(name, None)


def test_ddp_two_processes_match_one(tmp_path, clean_imports):
    if not torch.distributed.is_available():
        pytest.skip("this torch has no torch.distributed")
    import torch.multiprocessing as mp

    out = str(tmp_path / "result")
    mp.spawn(_worker, args=(str(tmp_path / "store"), out), nprocs=WORLD, join=True)

    torch.set_num_threads(1)
    train = _reference()
    torch.manual_seed(0)
    model = train.FastGPT2(train.GPT2Config(**SIZES))
    single = _step(model, list(model.named_parameters()), _global_batches())

    for rank in range(WORLD):
        ddp = torch.load(f"{out}.{rank}", weights_only=False)
        assert ddp["loss"] == pytest.approx(single["loss"], rel=1e-5), f"rank {rank}: loss"
        assert ddp["norm"] == pytest.approx(single["norm"], rel=1e-4), f"rank {rank}: gradient norm"
        assert set(ddp["grads"]) == set(single["grads"])
        for name, grad in single["grads"].items():
            torch.testing.assert_close(ddp["grads"][name], grad, rtol=1e-4, atol=1e-6, msg=f"rank {rank}: {name}")
