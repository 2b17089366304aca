"""Bugs learners write in stage 10, each with the check that must catch it."""
from dataclasses import replace

from grader.mutants import Mutant

MUTANTS = [
    Mutant(
        name="rmsnorm_subtracts_mean",
        bug="RMSNorm subtracts the mean first, like LayerNorm",
        file="llama.py",
        find="x32 = x.float()\n",
        replace="x32 = x.float()\n        x32 = x32 - x32.mean(dim=-1, keepdim=True)\n",
        caught_by="rmsnorm_matches_torch",
        message="subtracts the mean",
    ),
    Mutant(
        name="rmsnorm_eps_outside_sqrt",
        bug="RMSNorm adds eps to the root mean square instead of the mean square",
        file="llama.py",
        find="normed = x32 * torch.rsqrt(x32.pow(2).mean(dim=-1, keepdim=True) + self.eps)",
        replace="normed = x32 / (x32.pow(2).mean(dim=-1, keepdim=True).sqrt() + self.eps)",
        caught_by="rmsnorm_matches_torch",
        message="outside the square root",
    ),
    Mutant(
        name="swiglu_silu_on_up",
        bug="SiLU on the up projection w3 instead of the gate w1",
        file="llama.py",
        find="return self.w2(F.silu(self.w1(x)) * self.w3(x))",
        replace="return self.w2(self.w1(x) * F.silu(self.w3(x)))",
        caught_by="swiglu_values",
        message="wrong branch",
    ),
    Mutant(
        name="rope_theta_ignored",
        bug="precompute_rope always uses 10000 as its base, ignoring theta",
        file="llama.py",
        find="inv_freq = 1.0 / theta ** (",
        replace="inv_freq = 1.0 / 10000.0 ** (",
        caught_by="rope_tables_match",
        message="ignore the theta argument",
    ),
    Mutant(
        name="rope_interleaved_pairs",
        bug="RoPE in Meta's interleaved-pairs layout (2i, 2i+1) instead of the two halves",
        file="llama.py",
        find="angles = torch.cat([angles, angles], dim=-1)",
        replace="angles = angles.repeat_interleave(2, dim=-1)",
        more_edits=(("x1, x2 = x.chunk(2, dim=-1)\n    rotated = torch.cat([-x2, x1], dim=-1)",
                     "x1, x2 = x[..., 0::2], x[..., 1::2]\n    rotated = torch.stack([-x2, x1], dim=-1).flatten(-2)"),),
        caught_by="rope_tables_match",
        message="interleave",
    ),
    Mutant(
        name="rope_rotate_half_sign",
        bug="rotate_half with the wrong sign: cat([x2, -x1])",
        file="llama.py",
        find="rotated = torch.cat([-x2, x1], dim=-1)",
        replace="rotated = torch.cat([x2, -x1], dim=-1)",
        caught_by="rope_matches_formula",
        message="wrong sign",
    ),
    Mutant(
        name="rope_ignores_start_pos",
        bug="apply_rope always uses positions 0..T-1, even when decoding at start_pos",
        file="llama.py",
        find="cos = cos[start_pos : start_pos + T].to(x.dtype)\n    sin = sin[start_pos : start_pos + T].to(x.dtype)",
        replace="cos = cos[:T].to(x.dtype)\n    sin = sin[:T].to(x.dtype)",
        caught_by="rope_start_pos_offset",
        message="ignores start_pos",
    ),
    Mutant(
        name="rope_on_values",
        bug="RoPE applied to the values too",
        file="llama.py",
        find="k = apply_rope(k, cos, sin, start_pos)\n",
        replace="k = apply_rope(k, cos, sin, start_pos)\n        v = apply_rope(v, cos, sin, start_pos)\n",
        caught_by="attention_rope_not_on_values",
        message="rotates the values",
    ),
    Mutant(
        name="repeat_kv_tiles",
        bug="repeat_kv with .repeat (tiling) instead of repeat_interleave",
        file="llama.py",
        find="return x.repeat_interleave(n_rep, dim=1)",
        replace="return x.repeat(1, n_rep, 1, 1)",
        caught_by="gqa_equals_mha",
        message="repeat_interleave",
    ),
    Mutant(
        name="cache_not_written",
        bug="KVCache.update returns the cached tensors without storing the new keys and values",
        file="llama.py",
        find="        self.k[layer, :, :, start_pos:end] = k\n        self.v[layer, :, :, start_pos:end] = v\n",
        replace="",
        caught_by="kv_cache_matches_full_forward",
        message="did not store its keys in the cache",
    ),
    Mutant(
        name="cache_written_at_zero",
        bug="KVCache.update always writes the new keys and values at position 0",
        file="llama.py",
        find="        self.k[layer, :, :, start_pos:end] = k\n        self.v[layer, :, :, start_pos:end] = v\n",
        replace="        self.k[layer, :, :, : k.shape[2]] = k\n        self.v[layer, :, :, : v.shape[2]] = v\n",
        caught_by="kv_cache_matches_full_forward",
        message="overwrote position 0 of the cache",
    ),
    Mutant(
        name="no_mask_with_cache",
        bug="the causal mask is dropped whenever a cache is used, so the prefill sees the future",
        file="llama.py",
        find="y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)",
        replace="y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask if cache is None else None)",
        caught_by="kv_cache_matches_full_forward",
        message="keep the causal mask during the prefill",
    ),
    Mutant(
        name="mask_not_offset",
        bug="the mask is a plain tril (aligned top-left) instead of offset by start_pos",
        file="llama.py",
        find=".tril(diagonal=S - T)",
        replace=".tril()",
        caught_by="kv_cache_chunked_prefill",
        message="offset by start_pos",
    ),
    Mutant(
        name="generate_forgets_cache",
        bug="generate with use_cache feeds one token at a time but never passes the cache",
        file="llama.py",
        find="logits, _ = self(next_token, cache=cache, start_pos=idx.shape[1] - 1)",
        replace="logits, _ = self(next_token, start_pos=idx.shape[1] - 1)",
        caught_by="generate_cache_same",
        message="use_cache=True",
    ),
    Mutant(
        name="generate_cache_unused",
        bug="generate runs the whole sequence at every step even with use_cache=True",
        file="llama.py",
        find="            if use_cache:\n                logits, _ = self(next_token",
        replace="            if False:\n                logits, _ = self(next_token",
        caught_by="cache_speed_cpu",
        message="The cache does not pay",
    ),
    Mutant(
        name="hf_gate_up_swapped",
        bug="load_hf_state_dict maps gate_proj to w3 and up_proj to w1",
        file="llama.py",
        find='"mlp.gate_proj": "feed_forward.w1",',
        replace='"mlp.gate_proj": "feed_forward.w3",',
        more_edits=(('"mlp.up_proj": "feed_forward.w3",', '"mlp.up_proj": "feed_forward.w1",'),),
        caught_by="hf_logits_match",
        message="gate_proj belongs to w1",
    ),
    Mutant(
        name="no_max_seq_len_check",
        bug="forward does not check start_pos + T against max_seq_len",
        file="llama.py",
        find="if start_pos + T > self.config.max_seq_len:",
        replace="if False:",
        caught_by="forward_rejects_beyond_max_seq_len",
        message="names max_seq_len",
    ),
]


def _named(name: str) -> Mutant:
    return next(m for m in MUTANTS if m.name == name)


# The slow variants of the GPU speed check (it skips without CUDA, so selftest cannot run it):
# tests/test_gpu_smoke.py drives it to its verdict on the CPU, and `python -m grader gpucheck`
# shows that it fails on a GPU.
GPU_MUTANTS = [
    replace(_named("generate_cache_unused"), caught_by="cache_speed_cuda", message="feed only the newest token"),
]
