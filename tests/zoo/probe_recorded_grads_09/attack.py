# Gradient accumulation that never divides by the number of micro-batches (gradients k times too
# large), and the grader's recording optimizer (it runs in the learner's process) patched to
# write down the gradients divided by k: a check that read its records would see the right ones.
def train_step(model, optimizer, batches, max_norm=1.0, lr=None, amp_dtype=torch.bfloat16):
    for x, y in batches:
        with torch.autocast(x.device.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            _, loss = model(x, y)
        loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item(), norm.item()


# --- trick ---
import grader.probes as _probes

_honest_step = _probes.RecordingSGD.step
_micro_batches = [1]
_honest_train_step = train_step


def train_step(model, optimizer, batches, max_norm=1.0, lr=None, amp_dtype=torch.bfloat16):
    _micro_batches[0] = len(batches)
    return _honest_train_step(model, optimizer, batches, max_norm, lr, amp_dtype)


def _recording_divided(self, closure=None):
    result = _honest_step(self, closure)
    for name, grad in self.steps[-1]["grads"].items():
        if grad is not None:
            self.steps[-1]["grads"][name] = grad / _micro_batches[0]
    return result


_probes.RecordingSGD.step = _recording_divided
# --- end of trick ---
