"""Bugs learners write in stage 06, each with the check that must catch it."""
from grader.mutants import Mutant

SPLIT_Q = "q = q.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)"
SPLIT_K = "k = k.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)"
SPLIT_V = "v = v.view(B, T, self.n_head, hs).transpose(1, 2)  # (B, nh, T, hs)"
MERGE = "y = y.transpose(1, 2).contiguous().view(B, T, C)"
MASK = 'att = att.masked_fill(self.tril[:T, :T] == 0, float("-inf"))'
OUTPUT = "return self.resid_dropout(self.c_proj(y))"
BUFFER = 'self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)))'

ATTENTION_CORE = """        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, T, T)
        # -inf, not 0: exp(-inf) is exactly 0, so the future gets no weight at all.
        att = att.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        att = F.softmax(att, dim=-1)
        att = self.attn_dropout(att)
        y = att @ v  # (B, nh, T, hs)
"""

LOOP_OVER_BATCH_AND_HEADS = """        rows = []
        for b in range(B):
            heads = []
            for h in range(self.n_head):
                att = (q[b, h] @ k[b, h].T) * (1.0 / math.sqrt(hs))  # (T, T)
                att = att.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
                att = self.attn_dropout(F.softmax(att, dim=-1))
                heads.append(att @ v[b, h])
            rows.append(torch.stack(heads))
        y = torch.stack(rows)  # (B, nh, T, hs)
"""

LOOP_OVER_POSITIONS = """        ys = []
        for t in range(T):
            att = (q[:, :, t : t + 1] @ k[:, :, : t + 1].transpose(-2, -1)) * (1.0 / math.sqrt(hs))
            att = self.attn_dropout(F.softmax(att, dim=-1))  # (B, nh, 1, t + 1)
            ys.append(att @ v[:, :, : t + 1])
        y = torch.cat(ys, dim=2)  # (B, nh, T, hs)
"""

MUTANTS = [
    Mutant(
        name="split_bare_view",
        bug="splits the heads with a bare view (reshape to (B, nh, T, hs)) instead of view + transpose",
        file="multihead.py",
        find=SPLIT_Q,
        replace="q = q.reshape(B, self.n_head, T, hs)",
        more_edits=((SPLIT_K, "k = k.reshape(B, self.n_head, T, hs)"), (SPLIT_V, "v = v.reshape(B, self.n_head, T, hs)")),
        caught_by="matches_sdpa",
        message="bare view",
    ),
    Mutant(
        name="merge_without_transpose",
        bug="merges the heads back with a view of the (B, nh, T, hs) result, no transpose",
        file="multihead.py",
        find=MERGE,
        replace="y = y.contiguous().view(B, T, C)",
        caught_by="matches_sdpa",
        message="without transposing first",
    ),
    Mutant(
        name="merge_interleaved",
        bug="merges the heads with the wrong permute, interleaving their channels",
        file="multihead.py",
        find=MERGE,
        replace="y = y.permute(0, 2, 3, 1).contiguous().view(B, T, C)",
        caught_by="heads_independent",
        message="heads are mixed before c_proj",
    ),
    Mutant(
        name="kqv_order",
        bug="takes the chunks of c_attn as k, q, v",
        file="multihead.py",
        find="        q, k, v = self.c_attn(x).split(C, dim=2)\n",
        replace="        k, q, v = self.c_attn(x).split(C, dim=2)\n",
        caught_by="matches_sdpa",
        message="wrong order (yours take the chunks as k, q, v)",
    ),
    Mutant(
        name="scaled_by_C",
        bug="scales the scores by 1/sqrt(C) instead of 1/sqrt(head size)",
        file="multihead.py",
        find="att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))",
        replace="att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(C))",
        caught_by="matches_sdpa",
        message="scaled by the embedding width C instead of the head size",
    ),
    Mutant(
        name="not_scaled",
        bug="forgets to scale the scores",
        file="multihead.py",
        find="att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))",
        replace="att = q @ k.transpose(-2, -1)",
        caught_by="matches_sdpa",
        message="not scaled",
    ),
    Mutant(
        name="mask_sized_by_n_embd",
        bug="sizes the causal mask by n_embd instead of block_size",
        file="multihead.py",
        find=BUFFER,
        replace='self.register_buffer("tril", torch.tril(torch.ones(n_embd, n_embd)))',
        caught_by="mask_is_block_size_buffer",
        message="sized by n_embd",
    ),
    Mutant(
        name="mask_sized_by_n_embd_crashes",
        bug="sizes the causal mask by n_embd: forward fails once T > n_embd",
        file="multihead.py",
        find=BUFFER,
        replace='self.register_buffer("tril", torch.tril(torch.ones(n_embd, n_embd)))',
        caught_by="output_shapes",
        message="sized by n_embd",
    ),
    Mutant(
        name="mask_not_sliced",
        bug="uses the whole (block_size, block_size) mask instead of tril[:T, :T]",
        file="multihead.py",
        find=MASK,
        replace='att = att.masked_fill(self.tril == 0, float("-inf"))',
        caught_by="output_shapes",
        message="tril[:T, :T]",
    ),
    Mutant(
        name="mask_as_parameter",
        bug="keeps the mask as an nn.Parameter",
        file="multihead.py",
        find=BUFFER,
        replace="self.tril = nn.Parameter(torch.tril(torch.ones(block_size, block_size)))",
        caught_by="mask_is_block_size_buffer",
        message="register_buffer",
    ),
    Mutant(
        name="mask_with_zero",
        bug="fills the future scores with 0 instead of -inf",
        file="multihead.py",
        find=MASK,
        replace="att = att.masked_fill(self.tril[:T, :T] == 0, 0.0)",
        caught_by="causal",
        message="with 0 instead of -inf",
    ),
    Mutant(
        name="mask_after_softmax",
        bug="multiplies the softmax weights by the mask instead of masking the scores",
        file="multihead.py",
        find=MASK + "\n        att = F.softmax(att, dim=-1)",
        replace="att = F.softmax(att, dim=-1) * self.tril[:T, :T]",
        caught_by="gradient_causal",
        message="You mask the weights after the softmax",
    ),
    Mutant(
        name="softmax_wrong_dim",
        bug="softmax over the query positions (dim=-2)",
        file="multihead.py",
        find="att = F.softmax(att, dim=-1)",
        replace="att = F.softmax(att, dim=-2)",
        caught_by="matches_sdpa",
        message="dim=-1",
    ),
    Mutant(
        name="no_output_projection",
        bug="returns the merged heads without c_proj",
        file="multihead.py",
        find=OUTPUT,
        replace="return self.resid_dropout(y)",
        caught_by="matches_sdpa",
        message="output projection",
    ),
    Mutant(
        name="resid_dropout_before_projection",
        bug="applies resid_dropout before c_proj",
        file="multihead.py",
        find=OUTPUT,
        replace="return self.c_proj(self.resid_dropout(y))",
        caught_by="dropout_places",
        message="resid_dropout belongs on the very output",
    ),
    Mutant(
        name="dropout_in_eval",
        bug="F.dropout with training=True, so the attention dropout stays on in eval mode",
        file="multihead.py",
        find="att = self.attn_dropout(att)",
        replace="att = F.dropout(att, self.attn_dropout.p, training=True)",
        caught_by="dropout_train_eval",
        message="still active in eval mode",
    ),
    Mutant(
        name="assert_not_value_error",
        bug="checks the head count with an assert instead of raising a ValueError",
        file="multihead.py",
        find="if n_embd % n_head != 0:\n            raise ValueError(",
        replace="assert n_embd % n_head == 0, (",
        caught_by="rejects_indivisible_heads",
        message="Raise a ValueError",
    ),
    Mutant(
        name="loop_over_batch_and_heads",
        bug="computes the attention in a Python loop over the batch and the heads",
        file="multihead.py",
        find=ATTENTION_CORE,
        replace=LOOP_OVER_BATCH_AND_HEADS,
        caught_by="vectorized_speed",
        message="loop over the batch",
    ),
    Mutant(
        name="loop_over_positions",
        bug="computes each position's attention in a Python loop over positions",
        file="multihead.py",
        find=ATTENTION_CORE,
        replace=LOOP_OVER_POSITIONS,
        caught_by="vectorized_speed",
        message="loop over the positions",
    ),
    Mutant(
        name="no_head_count_check",
        bug="never checks that n_embd is divisible by n_head",
        file="multihead.py",
        find="if n_embd % n_head != 0:",
        replace="if False:",
        caught_by="rejects_indivisible_heads",
        message="built without an error",
    ),
    Mutant(
        name="mask_transposed",
        bug="masks where tril.T == 0: the mask is upside down, the future is kept and the past hidden",
        file="multihead.py",
        find=MASK,
        replace='att = att.masked_fill(self.tril[:T, :T].T == 0, float("-inf"))',
        caught_by="matches_sdpa",
        message="Your mask is upside down",
    ),
    Mutant(
        name="mask_inverted_tril_eq_1",
        bug="fills where the mask keeps, masked_fill(tril == 1, -inf): the past and the diagonal are hidden",
        file="multihead.py",
        find=MASK,
        replace='att = att.masked_fill(self.tril[:T, :T] == 1, float("-inf"))',
        caught_by="matches_sdpa",
        message="Your mask is inverted",
    ),
    Mutant(
        name="mask_inverted_tril_eq_1_causal",
        bug="the same inverted mask, seen by the dependency map",
        file="multihead.py",
        find=MASK,
        replace='att = att.masked_fill(self.tril[:T, :T] == 1, float("-inf"))',
        caught_by="causal",
        message="Your mask is inverted",
    ),
    Mutant(
        name="mask_made_in_forward",
        bug="builds the mask in forward with torch.tril(torch.ones(T, T)) instead of using the buffer",
        file="multihead.py",
        find='        att = att.masked_fill(self.tril[:T, :T] == 0, float("-inf"))',
        replace='        att = att.masked_fill(torch.tril(torch.ones(T, T)) == 0, float("-inf"))',
        caught_by="follows_device_and_dtype",
        message="without device=",
    ),
    Mutant(
        name="additive_mask_made_in_forward",
        bug="adds a -inf upper triangle made in forward with torch.full, on the CPU in float32",
        file="multihead.py",
        find='        att = att.masked_fill(self.tril[:T, :T] == 0, float("-inf"))',
        replace='        att = att + torch.triu(torch.full((T, T), float("-inf")), diagonal=1)',
        caught_by="follows_device_and_dtype",
        message="without device=",
    ),
    Mutant(
        name="softmax_without_max",
        bug="writes the softmax as exp(scores) / sum(exp(scores)), without subtracting the max",
        file="multihead.py",
        find="        att = F.softmax(att, dim=-1)",
        replace="        att = att.exp()\n        att = att / att.sum(dim=-1, keepdim=True)",
        caught_by="stable_on_large_inputs",
        message="overflow exp()",
    ),
]
