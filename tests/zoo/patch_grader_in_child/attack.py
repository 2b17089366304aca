# The grader's own modules, as the sandboxed child has them, patched to find nothing wrong,
# then a wrong answer: what judges it runs in the parent.
def bigram_counts(ids, vocab_size):
    import sys

    for name, module in list(sys.modules.items()):
        if name.startswith("grader") and module is not None:
            for attribute in ("assert_close", "assert_shape", "assert_dtype", "likely_bug"):
                if hasattr(module, attribute):
                    setattr(module, attribute, lambda *a, **k: None)
    return torch.zeros(vocab_size, vocab_size, dtype=torch.int64)
