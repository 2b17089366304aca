# A tensor subclass that says it equals anything, holding a wrong answer: comparisons made in
# the learner's process would be fooled, and the subclass would carry the lie along.
class _Agreeable(torch.Tensor):
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in ("equal", "allclose"):
            return True
        if name in ("eq", "__eq__", "isclose"):
            return torch.ones(args[0].shape, dtype=torch.bool)
        return super().__torch_function__(func, types, args, kwargs or {})


def bigram_counts(ids, vocab_size):
    return torch.zeros(vocab_size, vocab_size, dtype=torch.int64).as_subclass(_Agreeable)
