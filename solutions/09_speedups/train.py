"""Stage 09: the training loop that makes GPT-2 fast.

Stage 08 gave you GPT-2. Trained naively (float32, masked attention, one batch at a time)
it crawls. This stage adds, one by one, the tricks that make a GPT-2 training step several
times faster without changing what the model learns:

    TF32 matmuls           float32 matmuls on tensor cores with a 10-bit mantissa
    bf16 autocast          forward and loss in bfloat16, weights and gradients in float32
    flash attention        F.scaled_dot_product_attention(is_causal=True): no (T, T) matrix
    torch.compile          the model as a few fused kernels instead of hundreds of small ones
    padded vocabulary      50257 -> 50304 = 786 * 64: "nice" matrix sizes, same loss
    fused AdamW            one kernel updates every parameter
and the loop that trains GPT-2 well:
    gradient accumulation  k micro-batches = one batch k times larger (divide the loss by k)
    learning rate          linear warmup, then a cosine decay down to min_lr
    gradient clipping      the global gradient norm capped at max_norm (1.0)
    DDP                    the same step on several GPUs: gradients averaged across them

Run this file for a small demo: `python exercises/09_speedups/train.py`, or on several
processes: `torchrun --standalone --nproc_per_node=2 exercises/09_speedups/train.py`.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

if __name__ == "__main__":
    # Run as a script, this file finds the earlier stages in the folders beside its own
    # (the grader sets its own path when it grades, so this never changes a score).
    here = Path(__file__).resolve().parent.parent
    sys.path[1:1] = [str(here / "08_gpt2"), str(here / "07_layernorm"), str(here / "06_multihead")]

from gpt2 import GPT2, GPT2Config  # noqa: E402  (your stage 08)


def configure_tf32() -> None:
    """Let float32 matrix multiplications use TensorFloat-32 on the GPU.

    After this call, `torch.backends.cuda.matmul.fp32_precision` is "tf32" (the same as
    `torch.get_float32_matmul_precision() == "high"`). Returns None. On a CPU it changes
    nothing you can see; on an Ampere or newer GPU, float32 matmuls run on tensor cores.
    """
    ### BEGIN SOLUTION
    # Hint: one call: torch.set_float32_matmul_precision(...). "highest" is full float32,
    #   "high" allows TF32.
    # TF32 keeps float32's 8 exponent bits (same range) but only 10 mantissa bits, the
    # precision of float16. Products are rounded, sums are still accumulated in float32:
    # for training, the difference is noise; the speed-up on an A100/H100 is up to 8x.
    torch.set_float32_matmul_precision("high")
    ### END SOLUTION


class CausalSelfAttention(nn.Module):
    """Stage 06's multi-head causal self-attention, computed by flash attention.

    The same constructor, the same parameters (c_attn, c_proj, with the same meaning and
    layout: q, k, v side by side in c_attn's output, head h in channels [h*hs, (h+1)*hs)),
    and the same result as stage 06 in eval mode, but no mask buffer and no (T, T) matrix:
    the attention itself is one call of

        F.scaled_dot_product_attention(q, k, v, dropout_p=..., is_causal=True)

    which applies the 1/sqrt(hs) scale, the causal mask and the softmax inside one fused
    kernel (FlashAttention on a GPU).

    Args:
        n_embd, n_head, block_size, dropout, bias: as in stage 06. block_size is accepted
            for the same signature; the causal mask is built by the kernel.
    Attributes:
        c_attn: nn.Linear(n_embd, 3 * n_embd, bias=bias); c_proj: nn.Linear(n_embd, n_embd,
        bias=bias); resid_dropout: nn.Dropout(dropout); dropout: the float probability,
        passed to the kernel as dropout_p in training mode only.
    """

    def __init__(self, n_embd: int, n_head: int, block_size: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        if n_embd % n_head != 0:
            raise ValueError(f"n_embd={n_embd} is not divisible by n_head={n_head}.")
        self.n_head = n_head
        self.n_embd = n_embd
        self.dropout = dropout
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, C) float tensor -> (B, T, C), in x's dtype (bfloat16 under autocast)."""
        B, T, C = x.shape
        ### BEGIN SOLUTION
        # Hint: split and reshape q, k, v exactly as in stage 06 (view, then transpose(1, 2)).
        #   Replace the scores, mask, softmax, dropout and @ v by one
        #   F.scaled_dot_product_attention call; dropout_p only while self.training.
        hs = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, hs).transpose(1, 2)
        v = v.view(B, T, self.n_head, hs).transpose(1, 2)
        # is_causal=True builds the mask inside the kernel: FlashAttention walks over tiles of
        # keys, skips the tiles entirely in the future, and never writes the (T, T) scores to
        # memory. Passing an explicit attn_mask instead would force a slower kernel.
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))
        ### END SOLUTION


def padded_vocab_size(vocab_size: int, multiple: int = 64) -> int:
    """The smallest multiple of `multiple` that is >= vocab_size: padded_vocab_size(50257) == 50304."""
    ### BEGIN SOLUTION
    # Hint: round up with integer division: -(-a // b) is ceil(a / b).
    return -(-vocab_size // multiple) * multiple
    ### END SOLUTION


class FastGPT2(GPT2):
    """Stage 08's GPT2 with flash attention and a vocabulary padded to a multiple of 64.

    FastGPT2(config, vocab_multiple=64) builds a GPT2 whose wte and lm_head (tied, as in
    stage 08) have padded_vocab_size(config.vocab_size, vocab_multiple) rows, and replaces
    every block's attention by this stage's CausalSelfAttention, keeping the weights stage
    08 initialized. The padded rows are never an input (token ids stay below vocab_size)
    and never an output: forward drops their logits.

    Attributes:
        vocab_size: the real vocabulary size, config.vocab_size.
        config: the GPT2Config of the padded model (its vocab_size is the padded size).
    """

    def __init__(self, config: GPT2Config, vocab_multiple: int = 64):
        ### BEGIN SOLUTION
        # Hint: dataclasses.replace(config, vocab_size=...) copies a config with one field
        #   changed; build the GPT2 with it (super().__init__), then keep the real size in
        #   self.vocab_size. For each block, make a CausalSelfAttention of this stage, copy
        #   the old attention's weights into it (load_state_dict(..., strict=False): stage
        #   06's mask buffer has no place here) and assign it to block.attn.
        super().__init__(replace(config, vocab_size=padded_vocab_size(config.vocab_size, vocab_multiple)))
        self.vocab_size = config.vocab_size
        for block in self.transformer.h:
            fast = CausalSelfAttention(config.n_embd, config.n_head, config.block_size, config.dropout, config.bias)
            # Keep stage 08's init (the residual projection scaled by 1/sqrt(2 * n_layer)).
            fast.load_state_dict(block.attn.state_dict(), strict=False)
            block.attn = fast
        ### END SOLUTION

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """(logits, loss) as in stage 08, over the REAL vocabulary.

        Args:
            idx: (B, T) int64 ids in [0, vocab_size); targets: (B, T) int64 or None.
        Returns:
            logits of shape (B, T, vocab_size) (the padded columns removed), and the mean
            cross-entropy of those logits over all B*T positions (0-dim tensor), or None.
            The loss is the one an unpadded GPT2 with the same weights would give.
        """
        ### BEGIN SOLUTION
        # Hint: super().forward(idx) gives the logits over the padded vocabulary. Slice off the
        #   padded columns BEFORE the loss: their logits are not -inf, so a softmax over them
        #   would give the padded ids some probability and change the loss.
        logits, _ = super().forward(idx)
        # The lm_head matmul ran at the "nice" width; its extra columns are sliced away here,
        # so neither the loss nor sampling ever sees an id that is not a real token.
        logits = logits[..., : self.vocab_size]
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, self.vocab_size), targets.reshape(-1))
        return logits, loss
        ### END SOLUTION


def make_optimizer(model: GPT2, weight_decay: float, learning_rate: float, device_type: str) -> torch.optim.AdamW:
    """GPT-2's AdamW for `model`: stage 08's two parameter groups, betas (0.9, 0.95), eps 1e-8,
    and fused=True when device_type == "cuda" (the kernel that updates every tensor at once).

    device_type is "cuda" or "cpu" (the type of the device the model is on). Returns the
    torch.optim.AdamW.
    """
    ### BEGIN SOLUTION
    # Hint: stage 08's model.configure_optimizers does the groups and the fused flag when it is
    #   told the device type.
    return model.configure_optimizers(weight_decay, learning_rate, betas=(0.9, 0.95), device_type=device_type)
    ### END SOLUTION


def get_lr(step: int, warmup_steps: int, max_steps: int, max_lr: float, min_lr: float) -> float:
    """The learning rate at optimizer step `step` (counted from 0): linear warmup, then cosine decay.

        step <  warmup_steps:  max_lr * (step + 1) / warmup_steps
                               (step 0 already learns; step warmup_steps - 1 reaches max_lr)
        warmup_steps <= step <= max_steps:
                               min_lr + 0.5 * (1 + cos(pi * r)) * (max_lr - min_lr),
                               r = (step - warmup_steps) / (max_steps - warmup_steps)
        step >  max_steps:     min_lr
    Requires 0 <= warmup_steps < max_steps. Returns a float.
    """
    ### BEGIN SOLUTION
    # Hint: three cases. math.cos and math.pi; r goes from 0 to 1 over the decay.
    # Warmup: Adam's second-moment estimates are poor for the first steps; small steps
    # while they settle keep the early updates from throwing the model off.
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step > max_steps:
        return min_lr
    ratio = (step - warmup_steps) / (max_steps - warmup_steps)
    coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))  # 1 at the end of warmup, 0 at max_steps
    return min_lr + coeff * (max_lr - min_lr)
    ### END SOLUTION


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: list[tuple[torch.Tensor, torch.Tensor]],
    max_norm: float = 1.0,
    lr: float | None = None,
    amp_dtype: torch.dtype | None = torch.bfloat16,
) -> tuple[float, float]:
    """One optimizer step over len(batches) micro-batches (gradient accumulation).

    Args:
        model: returns (logits, loss) for model(x, y), like GPT2; possibly compiled, possibly
            wrapped in DistributedDataParallel (then it has a `no_sync` method).
        optimizer: the optimizer of model's parameters.
        batches: k >= 1 micro-batches (x, y), each (B, T) int64, on the model's device.
        max_norm: the gradients' global L2 norm is clipped to this before the step.
        lr: when given, every param group's "lr" is set to it before the step.
        amp_dtype: the autocast dtype for the forward pass and the loss (torch.bfloat16), on
            the batches' device type; None runs in full precision (no autocast).
    Does, in this order:
        for each micro-batch: forward and loss under autocast (only those), loss / k,
            backward outside autocast; when the model has `no_sync`, every micro-batch but
            the last runs inside model.no_sync() (DDP then all-reduces once, on the last);
        clip the gradients to max_norm (torch.nn.utils.clip_grad_norm_);
        set the learning rate; optimizer.step(); optimizer.zero_grad(set_to_none=True).
    Returns:
        (loss, norm), two Python floats: the mean of the k micro-batch losses (averaged
        over all processes too when torch.distributed is initialized), and the global
        gradient norm BEFORE clipping.
    """
    ### BEGIN SOLUTION
    # Hint: k = len(batches). The loss of each micro-batch is a mean over its own B*T tokens;
    #   backward ADDS gradients, so divide each loss by k to get the mean over all k*B*T.
    #   contextlib.nullcontext() is a context manager that does nothing.
    k = len(batches)
    device_type = batches[0][0].device.type
    total = torch.zeros((), device=batches[0][0].device)
    for i, (x, y) in enumerate(batches):
        # Under DDP, backward all-reduces the gradients across processes. Doing that after
        # every micro-batch would be k-1 wasted all-reduces: sync only on the last one.
        last = i == k - 1
        sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()
        with sync:
            # Autocast around the forward and the loss only: matmuls run in bfloat16, while
            # the weights, their gradients and the optimizer stay float32. bfloat16 has
            # float32's exponent range, so unlike float16 no gradient scaler is needed.
            with torch.autocast(device_type=device_type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
                _, loss = model(x, y)
            loss = loss / k
            loss.backward()  # outside autocast: backward runs in the dtypes forward chose
        total += loss.detach()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(total, op=torch.distributed.ReduceOp.AVG)  # for logging only
    # One bad batch can give a huge gradient; clipping the global norm bounds the step.
    # clip_grad_norm_ returns the norm it measured, before clipping: worth logging.
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total.item(), norm.item()
    ### END SOLUTION


def ddp_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) of this process, from the environment torchrun sets.

    torchrun sets RANK (this process among all), LOCAL_RANK (among those on this machine,
    which picks the GPU) and WORLD_SIZE (how many processes). Without them (a plain
    `python train.py`) the process is alone: (0, 0, 1). Returns three ints.
    """
    ### BEGIN SOLUTION
    # Hint: os.environ.get("RANK", "0"), and int(...).
    return (
        int(os.environ.get("RANK", "0")),
        int(os.environ.get("LOCAL_RANK", "0")),
        int(os.environ.get("WORLD_SIZE", "1")),
    )
    ### END SOLUTION


def setup_distributed() -> tuple[int, int, int, torch.device]:
    """Start torch.distributed when torchrun launched several processes (given, not graded).

    Returns (rank, local_rank, world_size, device). NCCL on GPUs, gloo on CPUs.
    """
    rank, local_rank, world_size = ddp_env()
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return rank, local_rank, world_size, device


if __name__ == "__main__":
    import time

    from torch.nn.parallel import DistributedDataParallel as DDP

    rank, local_rank, world_size, device = setup_distributed()
    master = rank == 0
    configure_tf32()
    text = (Path(__file__).resolve().parents[2] / "datasets" / "fables.txt").read_text(encoding="utf-8")
    chars = sorted(set(text))
    data = torch.tensor([chars.index(c) for c in text])

    torch.manual_seed(1337)  # the same initial weights in every process
    config = GPT2Config(block_size=64, vocab_size=len(chars), n_layer=4, n_head=4, n_embd=128)
    model = FastGPT2(config).to(device)
    if master:
        print(f"vocabulary {len(chars)} padded to {model.config.vocab_size}; {model.num_parameters():,} parameters")
    raw_model = model
    if device.type == "cuda":
        model = torch.compile(model)
    if world_size > 1:
        model = DDP(model, device_ids=[local_rank] if device.type == "cuda" else None)
    optimizer = make_optimizer(raw_model, weight_decay=0.1, learning_rate=1e-3, device_type=device.type)

    batch_size, accum, max_steps, warmup = 16, 2, 200, 20
    gen = torch.Generator().manual_seed(rank)  # each process draws its own batches

    def micro_batch():
        starts = torch.randint(len(data) - config.block_size - 1, (batch_size,), generator=gen)
        x = torch.stack([data[s : s + config.block_size] for s in starts])
        y = torch.stack([data[s + 1 : s + config.block_size + 1] for s in starts])
        return x.to(device), y.to(device)

    for step in range(max_steps + 1):
        start = time.perf_counter()
        lr = get_lr(step, warmup, max_steps, max_lr=1e-3, min_lr=1e-4)
        batches = [micro_batch() for _ in range(accum)]
        loss, norm = train_step(model, optimizer, batches, max_norm=1.0, lr=lr,
                                amp_dtype=torch.bfloat16 if device.type == "cuda" else None)
        seconds = time.perf_counter() - start
        if master and step % 20 == 0:
            tokens = batch_size * config.block_size * accum * world_size
            print(f"step {step:3d}  loss {loss:.3f}  norm {norm:.2f}  lr {lr:.2e}  {tokens / seconds:,.0f} tokens/s")
    if master:
        raw_model.eval()
        out = raw_model.generate(torch.tensor([[chars.index("T")]], device=device), 120, temperature=0.8)
        print("sample:", "".join(chars[i] for i in out[0].tolist()))
    if world_size > 1:
        torch.distributed.destroy_process_group()
