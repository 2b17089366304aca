"""Bugs learners write in stage 09, each with the check that must catch it."""
from dataclasses import replace

from grader.mutants import Mutant

SDPA = "q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True"

MUTANTS = [
    Mutant(
        name="tf32_highest",
        bug="configure_tf32 keeps full float32 precision ('highest')",
        file="train.py",
        find='torch.set_float32_matmul_precision("high")',
        replace='torch.set_float32_matmul_precision("highest")',
        caught_by="tf32_enabled",
        message="set_float32_matmul_precision('high')",
    ),
    Mutant(
        name="sdpa_not_causal",
        bug="scaled_dot_product_attention without is_causal=True",
        file="train.py",
        find=SDPA,
        replace="q, k, v, dropout_p=self.dropout if self.training else 0.0",
        caught_by="sdpa_matches_masked_attention",
        message="is_causal=True",
    ),
    Mutant(
        name="sdpa_explicit_mask",
        bug="a hand-made causal mask passed as attn_mask instead of is_causal=True",
        file="train.py",
        find=SDPA,
        replace="q, k, v, attn_mask=torch.ones(T, T, dtype=torch.bool, device=x.device).tril(), "
                "dropout_p=self.dropout if self.training else 0.0",
        caught_by="sdpa_called_with_is_causal",
        message="slower kernel",
    ),
    Mutant(
        name="sdpa_dropout_in_eval",
        bug="attention dropout stays on in eval mode (dropout_p=self.dropout always)",
        file="train.py",
        find=SDPA,
        replace="q, k, v, dropout_p=self.dropout, is_causal=True",
        caught_by="sdpa_called_with_is_causal",
        message="dropout_p=self.dropout if self.training else 0.0",
    ),
    Mutant(
        name="sdpa_heads_bare_view",
        bug="heads split with a bare view(B, nh, T, hs) before scaled_dot_product_attention",
        file="train.py",
        find="q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)\n"
             "        k = k.view(B, T, self.n_head, hs).transpose(1, 2)\n"
             "        v = v.view(B, T, self.n_head, hs).transpose(1, 2)",
        replace="q = q.reshape(B, self.n_head, T, hs)\n"
                "        k = k.reshape(B, self.n_head, T, hs)\n"
                "        v = v.reshape(B, self.n_head, T, hs)",
        caught_by="sdpa_matches_masked_attention",
        message="bare view",
    ),
    Mutant(
        name="pad_always_adds",
        bug="padded_vocab_size adds a multiple even when the size is already one",
        file="train.py",
        find="return -(-vocab_size // multiple) * multiple",
        replace="return (vocab_size // multiple + 1) * multiple",
        caught_by="padded_vocab_size_values",
        message="round up, do not always add",
    ),
    Mutant(
        name="padded_logits_in_loss",
        bug="the loss is taken over the padded logits, not the real vocabulary's",
        file="train.py",
        find="        logits, _ = super().forward(idx)\n",
        replace="        logits, full_loss = super().forward(idx, targets)\n",
        more_edits=((
            "            loss = F.cross_entropy(logits.reshape(-1, self.vocab_size), targets.reshape(-1))",
            "            loss = full_loss",
        ),),
        caught_by="fast_gpt2_loss_unchanged",
        message="includes the padded logits",
    ),
    Mutant(
        name="padded_logits_returned",
        bug="forward returns the logits of the padded vocabulary too",
        file="train.py",
        find="        logits = logits[..., : self.vocab_size]\n",
        replace="",
        more_edits=((
            "            loss = F.cross_entropy(logits.reshape(-1, self.vocab_size), targets.reshape(-1))",
            "            loss = F.cross_entropy(logits[..., : self.vocab_size].reshape(-1, self.vocab_size), targets.reshape(-1))",
        ),),
        caught_by="fast_gpt2_never_samples_padding",
        message="real tokens only",
    ),
    Mutant(
        name="attention_fresh_init",
        bug="the new attention layers keep PyTorch's default init instead of stage 08's weights",
        file="train.py",
        find="            fast.load_state_dict(block.attn.state_dict(), strict=False)\n",
        replace="",
        caught_by="fast_gpt2_keeps_init",
        message="copy the old attention's weights",
    ),
    Mutant(
        name="graph_break_assert",
        bug="forward checks the token ids with a Python if on a tensor (a graph break)",
        file="train.py",
        find="        logits, _ = super().forward(idx)\n",
        replace="        if (idx >= self.vocab_size).any():\n"
                "            raise ValueError('token id out of range')\n"
                "        logits, _ = super().forward(idx)\n",
        caught_by="fast_gpt2_compiles",
        message="graph break",
    ),
    Mutant(
        name="optimizer_not_fused",
        bug="make_optimizer does not pass the device type on, so AdamW is never fused",
        file="train.py",
        find="betas=(0.9, 0.95), device_type=device_type)",
        replace="betas=(0.9, 0.95))",
        caught_by="make_optimizer_fused",
        message="pass device_type on",
    ),
    Mutant(
        name="warmup_off_by_one",
        bug="warmup uses step / warmup_steps: lr 0 at step 0",
        file="train.py",
        find="return max_lr * (step + 1) / warmup_steps",
        replace="return max_lr * step / warmup_steps",
        caught_by="lr_warmup",
        message="off by one",
    ),
    Mutant(
        name="cosine_to_zero",
        bug="the cosine decays to 0 instead of min_lr",
        file="train.py",
        find="return min_lr + coeff * (max_lr - min_lr)",
        replace="return coeff * max_lr",
        caught_by="lr_cosine",
        message="decays to 0, not to min_lr",
    ),
    Mutant(
        name="cosine_over_max_steps",
        bug="the decay ratio divides by max_steps, so the cosine never reaches min_lr",
        file="train.py",
        find="ratio = (step - warmup_steps) / (max_steps - warmup_steps)",
        replace="ratio = (step - warmup_steps) / max_steps",
        caught_by="lr_cosine",
        message="at max_steps",
    ),
    Mutant(
        name="loss_not_divided",
        bug="the micro-batch loss is not divided by the number of micro-batches",
        file="train.py",
        find="            loss = loss / k\n",
        replace="",
        caught_by="accumulation_equals_big_batch",
        message="times too large",
    ),
    Mutant(
        name="zero_grad_in_loop",
        bug="zero_grad inside the accumulation loop wipes the earlier micro-batches",
        file="train.py",
        find="            loss = loss / k\n            loss.backward()",
        replace="            loss = loss / k\n            optimizer.zero_grad(set_to_none=True)\n            loss.backward()",
        caught_by="accumulation_equals_big_batch",
        message="zero_grad is called inside the accumulation loop",
    ),
    Mutant(
        name="no_zero_grad",
        bug="the gradients are never zeroed between steps",
        file="train.py",
        find="    optimizer.zero_grad(set_to_none=True)\n    return total.item(), norm.item()",
        replace="    return total.item(), norm.item()",
        caught_by="zero_grad_each_step",
        message="still there",
    ),
    Mutant(
        name="clip_after_step",
        bug="the gradients are clipped after optimizer.step()",
        file="train.py",
        find="    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)\n",
        replace="",
        more_edits=((
            "    optimizer.step()\n    optimizer.zero_grad(set_to_none=True)",
            "    optimizer.step()\n    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)\n"
            "    optimizer.zero_grad(set_to_none=True)",
        ),),
        caught_by="clipping",
        message="BEFORE optimizer.step()",
    ),
    Mutant(
        name="norm_after_clipping",
        bug="train_step returns the gradient norm measured after clipping",
        file="train.py",
        find="    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)\n",
        replace="    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)\n"
                "    norm = torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None]).norm()\n",
        caught_by="clipping",
        message="norm after clipping",
    ),
    Mutant(
        name="autocast_around_backward",
        bug="loss.backward() runs inside the autocast block",
        file="train.py",
        find="                _, loss = model(x, y)\n            loss = loss / k\n            loss.backward()",
        replace="                _, loss = model(x, y)\n                loss = loss / k\n                loss.backward()",
        caught_by="autocast_forward_only",
        message="backward() ran inside the autocast region",
    ),
    Mutant(
        name="no_sync_every_micro_batch",
        bug="no_sync on every micro-batch, the last one too: gradients never all-reduced",
        file="train.py",
        find='sync = contextlib.nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync()',
        replace='sync = model.no_sync() if hasattr(model, "no_sync") else contextlib.nullcontext()',
        caught_by="no_sync_all_but_last",
        message="never averaged",
    ),
    Mutant(
        name="lr_after_step",
        bug="the learning rate is set after optimizer.step()",
        file="train.py",
        find="    if lr is not None:\n        for group in optimizer.param_groups:\n            group[\"lr\"] = lr\n    optimizer.step()\n",
        replace="    optimizer.step()\n    if lr is not None:\n        for group in optimizer.param_groups:\n            group[\"lr\"] = lr\n",
        caught_by="lr_set_before_step",
        message="BEFORE optimizer.step()",
    ),
    Mutant(
        name="ddp_env_world_size_default_zero",
        bug="ddp_env defaults WORLD_SIZE to 0",
        file="train.py",
        find='int(os.environ.get("WORLD_SIZE", "1")),',
        replace='int(os.environ.get("WORLD_SIZE", "0")),',
        caught_by="ddp_env_reads_environment",
        message="defaults 0, 0, 1",
    ),
    Mutant(
        name="resid_dropout_missing",
        bug="c_proj's output is returned without resid_dropout (only the kernel's dropout_p)",
        file="train.py",
        find="        return self.resid_dropout(self.c_proj(y))",
        replace="        return self.c_proj(y)",
        caught_by="attention_dropout_and_errors",
        message="c_proj's output is not dropped out",
    ),
    Mutant(
        name="functional_dropout_in_eval",
        bug="c_proj's output goes through F.dropout(..., self.dropout), which drops in eval mode too",
        file="train.py",
        find="        return self.resid_dropout(self.c_proj(y))",
        replace="        return F.dropout(self.c_proj(y), self.dropout)",
        caught_by="attention_dropout_and_errors",
        message="dropout is applied in eval mode too",
    ),
    Mutant(
        name="heads_assert_instead_of_valueerror",
        bug="nanoGPT's assert n_embd % n_head == 0 instead of the documented ValueError",
        file="train.py",
        find='        if n_embd % n_head != 0:\n            raise ValueError(f"n_embd={n_embd} is not divisible by n_head={n_head}.")\n',
        replace="        assert n_embd % n_head == 0\n",
        caught_by="attention_dropout_and_errors",
        message="should raise ValueError, but it raised AssertionError",
    ),
    Mutant(
        name="vocab_multiple_ignored",
        bug="FastGPT2 pads to 64 whatever vocab_multiple it is given",
        file="train.py",
        find="vocab_size=padded_vocab_size(config.vocab_size, vocab_multiple)",
        replace="vocab_size=padded_vocab_size(config.vocab_size)",
        caught_by="fast_gpt2_vocab_multiple",
        message="ignores vocab_multiple",
    ),
    Mutant(
        name="config_padded_in_place",
        bug="FastGPT2 pads the caller's config in place (config.vocab_size = ...) instead of a copy",
        file="train.py",
        find="        super().__init__(replace(config, vocab_size=padded_vocab_size(config.vocab_size, vocab_multiple)))\n"
             "        self.vocab_size = config.vocab_size\n",
        replace="        real_vocab_size = config.vocab_size\n"
                "        config.vocab_size = padded_vocab_size(config.vocab_size, vocab_multiple)\n"
                "        super().__init__(config)\n"
                "        self.vocab_size = real_vocab_size\n",
        caught_by="fast_gpt2_config_unchanged",
        message="changed the config it was given",
    ),
    Mutant(
        name="optimizer_weight_decay_literal",
        bug="make_optimizer calls configure_optimizers with nanoGPT's 0.1, not its weight_decay argument",
        file="train.py",
        find="return model.configure_optimizers(weight_decay, learning_rate,",
        replace="return model.configure_optimizers(0.1, learning_rate,",
        caught_by="make_optimizer_hyperparameters",
        message="does not pass its weight_decay argument on",
    ),
    Mutant(
        name="lr_linear_decay",
        bug="the learning rate decays linearly from max_lr to min_lr instead of by a cosine",
        file="train.py",
        find="coeff = 0.5 * (1.0 + math.cos(math.pi * ratio))",
        replace="coeff = 1.0 - ratio",
        caught_by="lr_every_step",
        message="Your decay is linear",
    ),
    Mutant(
        name="autocast_dtype_fixed",
        bug="train_step autocasts to torch.bfloat16 whatever amp_dtype says",
        file="train.py",
        find="dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):",
        replace="dtype=torch.bfloat16, enabled=amp_dtype is not None):",
        caught_by="train_step_options",
        message="ignores amp_dtype",
    ),
]


def _named(name: str) -> Mutant:
    return next(m for m in MUTANTS if m.name == name)


# The slow variants of the GPU speed checks, one per check (they skip without CUDA, so selftest
# cannot run them): tests/test_gpu_smoke.py drives each check to its verdict on the CPU with
# its mutant, and `python -m grader gpucheck` shows that each fails on a GPU.
GPU_MUTANTS = [
    replace(_named("tf32_highest"), caught_by="gpu_tf32_pays", message="set_float32_matmul_precision('high')"),
    Mutant(
        name="attention_by_hand",
        bug="the attention still builds the (T, T) scores, mask and softmax by hand instead of one SDPA call",
        file="train.py",
        find="        y = F.scaled_dot_product_attention(\n"
             "            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True\n"
             "        )\n",
        replace="        att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)\n"
                "        att = att.masked_fill(~torch.ones(T, T, dtype=torch.bool, device=x.device).tril(), float('-inf'))\n"
                "        y = F.dropout(att.softmax(dim=-1), self.dropout, self.training) @ v\n",
        caught_by="gpu_flash_attention_pays",
        message="F.scaled_dot_product_attention with is_causal=True",
    ),
    Mutant(
        name="compile_skipped",
        bug="FastGPT2.forward is marked @torch.compiler.disable, so torch.compile leaves the model eager",
        file="train.py",
        find="    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):\n"
             '        """(logits, loss) as in stage 08, over the REAL vocabulary.',
        replace="    @torch.compiler.disable\n"
                "    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):\n"
                '        """(logits, loss) as in stage 08, over the REAL vocabulary.',
        caught_by="gpu_compile_pays",
        message="leaves the model eager",
    ),
    Mutant(
        name="autocast_never_on",
        bug="train_step never turns autocast on, so the whole step runs in float32",
        file="train.py",
        find="dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):",
        replace="dtype=amp_dtype or torch.bfloat16, enabled=False):",
        caught_by="gpu_step_speed_vs_reference",
        message="autocast around forward and loss",
    ),
]
