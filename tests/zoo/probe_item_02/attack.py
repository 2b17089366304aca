# A model that cannot learn (its table is frozen; only a constant shift of the logits trains),
# and Tensor.item patched so that any loss read in the learner's process says 0.0: a training
# helper reporting losses from here would see a perfect curve.
_honest_init, _honest_forward = BigramLanguageModel.__init__, BigramLanguageModel.forward


def _frozen_init(self, vocab_size):
    _honest_init(self, vocab_size)
    self.token_embedding_table.weight.requires_grad_(False)
    self.shift = torch.nn.Parameter(torch.zeros(()))


def _shifted_forward(self, idx, targets=None):
    logits, _ = _honest_forward(self, idx)
    logits = logits + self.shift
    if targets is None:
        return logits, None
    return logits, torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


BigramLanguageModel.__init__, BigramLanguageModel.forward = _frozen_init, _shifted_forward
# --- trick ---
_honest_item = torch.Tensor.item


def _item(self):
    if self.dim() == 0 and self.is_floating_point() and self.grad_fn is not None:
        return 0.0
    return _honest_item(self)


torch.Tensor.item = _item
# --- end of trick ---
