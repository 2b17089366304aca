"""Trusted helpers that a suite runs on learner objects through `impl.probe(...)`.

They do what plain data cannot: train a learner's model for a few steps, overwrite one of
its parameters, read gradients. They return plain data, and the suite judges it.
"""
from __future__ import annotations

import torch


def set_parameter(model: torch.nn.Module, name: str, value: torch.Tensor) -> None:
    params = dict(model.named_parameters(remove_duplicate=False))  # a tied tensor under each of its names
    if name not in params:
        raise AttributeError(f"the model has no parameter named {name!r}; it has {sorted(params)}")
    with torch.no_grad():
        params[name].copy_(value)


def train_steps(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> None:
    """Full-batch AdamW on model(x, y)'s loss. It reports nothing: the suite measures the loss
    itself, from the logits the model returns before and after."""
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    for _ in range(steps):
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def backward_scalar(out):
    """What training differentiates: the loss of a (logits, loss) pair when there is one, else the
    output's sum. The parent reads the same scalar from outputs it is sent (checks/gradients.py)."""
    if isinstance(out, tuple):
        out = out[1] if len(out) > 1 and out[1] is not None else out[0]
    return out.float().sum()


def call_seeded(fn, seed: int, *args):
    """fn(*args) after torch.manual_seed(seed): dropout draws the same masks on every such call."""
    torch.manual_seed(seed)
    return fn(*args)


def parameter_gradients(model: torch.nn.Module, seed: int, *inputs) -> dict:
    """Every named parameter's value and gradient after backward of backward_scalar(model(*inputs)),
    run as call_seeded runs it. The parent checks each gradient against how the scalar moves when
    it moves that parameter."""
    model.zero_grad(set_to_none=True)
    backward_scalar(call_seeded(model, seed, *inputs)).backward()
    return {name: {"value": p.detach().clone(), "grad": None if p.grad is None else p.grad.detach().clone()}
            for name, p in model.named_parameters()}


def tensor_layout(module: torch.nn.Module) -> dict[str, dict[str, tuple[int, ...]]]:
    """Where a module keeps its tensors: name -> shape, by kind.

    'parameters' and 'buffers' as nn.Module registers them (buffers include non-persistent
    ones), 'state_dict' as saving would write it, and 'attributes': plain tensors assigned
    as attributes (`self.mask = torch.tril(...)`), which `.to(device)` and `state_dict` miss.
    """
    attributes = {}
    for prefix, sub in module.named_modules():
        for name, value in vars(sub).items():
            if isinstance(value, torch.Tensor) and not isinstance(value, torch.nn.Parameter):
                attributes[f"{prefix}.{name}" if prefix else name] = tuple(value.shape)
    return {
        "parameters": {name: tuple(p.shape) for name, p in module.named_parameters()},
        "buffers": {name: tuple(b.shape) for name, b in module.named_buffers()},
        "state_dict": {name: tuple(t.shape) for name, t in module.state_dict().items()},
        "attributes": attributes,
    }


class RecordingModel(torch.nn.Module):
    """A stand-in language model that writes down how it is called, for testing code that evaluates models.

    `model(idx, targets)` returns `(logits, loss)` like the course's models. Its losses are
    known in advance: the k-th call (from 1) returns k in eval mode and k + TRAIN_PENALTY in
    training mode (think of dropout making a training-mode loss worse). Each call appends a
    dict to `calls`: the mode of the model and of its dropout submodule, whether autograd was
    recording, the device, the loss it returned, and idx/targets (CPU copies; None on "meta").
    """

    TRAIN_PENALTY = 1000.0

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.dropout = torch.nn.Dropout(0.5)
        self.calls: list[dict] = []

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        value = float(len(self.calls) + 1) + (self.TRAIN_PENALTY if self.training else 0.0)
        on_meta = idx.device.type == "meta"
        self.calls.append({
            "training": self.training,
            "dropout_training": self.dropout.training,
            "grad_enabled": torch.is_grad_enabled(),
            "device": idx.device.type,
            "loss": value,
            "idx": None if on_meta else idx.detach().cpu().clone(),
            "targets": None if on_meta or targets is None else targets.detach().cpu().clone(),
        })
        logits = self.weight.expand(*idx.shape, 1)
        return logits, self.weight * 0.0 + value  # a 0-dim loss that needs grad when grad is on


class BigramLossModel(torch.nn.Module):
    """A fixed bigram model with dropout on its logits: `(logits, mean cross-entropy)`.

    `table[a]` holds the logits of the token after a. In training mode dropout scales and
    zeroes logits, which changes the loss; in eval mode the loss is exact.
    """

    def __init__(self, table: torch.Tensor, dropout: float = 0.5):
        super().__init__()
        self.table = torch.nn.Parameter(table.clone().float())
        self.dropout = torch.nn.Dropout(dropout)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        logits = self.dropout(self.table[idx])
        if targets is None:
            return logits, None
        return logits, torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())


def evaluate_with(evaluate, model: torch.nn.Module, *args, **kwargs) -> dict:
    """Call `evaluate(model, *args, **kwargs)` (a learner's estimate_loss) on a trusted model.

    Returns what it returned ('result'), the calls the model recorded ('calls', when it
    records them) and the mode of every module afterwards ('modes_after', model first).
    """
    result = evaluate(model, *args, **kwargs)
    return {
        "result": result,
        "calls": list(getattr(model, "calls", [])),
        "modes_after": [m.training for m in model.modules()],
    }


def call_each(fn, inputs: list) -> list:
    """[fn(*args) for args in inputs], in the process where fn runs: one round trip for many calls.

    What a speed check times from outside (grader.checks.speed.measure_ratio): the grader
    holds the clock, the inputs are fresh for every timed run, and the answers come back to
    be checked, so neither a forged clock nor a remembered answer gains anything.
    """
    return [fn(*args) for args in inputs]


# --- stage 08 (GPT-2): tying, optimizer groups, building on the meta device, seeded sampling ---


def tied_parameters(model: torch.nn.Module, name_a: str, name_b: str, idx: torch.Tensor, targets: torch.Tensor,
                    lr: float = 0.1) -> dict:
    """Are the parameters `name_a` and `name_b` (module paths, such as 'lm_head.weight') one tensor?

    Reports whether they are the same nn.Parameter object and whether they share memory,
    the names model.named_parameters() lists for them, then takes one plain gradient step
    (p -= lr * p.grad for every parameter) on model(idx, targets)'s loss and reports how far
    each moved and whether they are still equal.
    """
    a, b = model.get_parameter(name_a), model.get_parameter(name_b)
    info = {
        "same_object": a is b,
        "same_storage": a.shape == b.shape and a.data_ptr() == b.data_ptr(),
        "listed_as": [name for name, p in model.named_parameters() if p is a or p is b],
    }
    before_a, before_b = a.detach().clone(), b.detach().clone()
    model.zero_grad(set_to_none=True)
    _, loss = model(idx, targets)
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p.add_(p.grad, alpha=-lr)
    info["moved_a"] = (a.detach() - before_a).abs().max().item()
    info["moved_b"] = (b.detach() - before_b).abs().max().item()
    info["equal_after"] = bool(torch.equal(a.detach(), b.detach()))
    model.zero_grad(set_to_none=True)
    return info


def optimizer_groups(model: torch.nn.Module, optimizer) -> dict:
    """What an optimizer holds, by the model's parameter names.

    Returns its class ('type', and 'is_adamw' when it is exactly torch.optim.AdamW), its
    defaults' 'fused' flag, each group's parameter names (a tensor that is not a parameter
    of the model is named by its shape), weight_decay, lr and betas, and every parameter of
    the model with its shape and requires_grad.
    """
    names: dict[int, str] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), name)
    groups = []
    for group in getattr(optimizer, "param_groups", []):
        betas = group.get("betas")
        groups.append({
            "names": [names.get(id(p), f"<not a parameter of the model: a tensor of shape {tuple(p.shape)}>")
                      for p in group["params"]],
            "weight_decay": float(group.get("weight_decay", float("nan"))),
            "lr": float(group.get("lr", float("nan"))),
            "betas": None if betas is None else tuple(float(b) for b in betas),
        })
    return {
        "type": f"{type(optimizer).__module__}.{type(optimizer).__qualname__}",
        "is_adamw": type(optimizer) is torch.optim.AdamW,
        "fused": bool(getattr(optimizer, "defaults", {}).get("fused")),
        "groups": groups,
        "parameters": {name: {"shape": tuple(p.shape), "requires_grad": p.requires_grad}
                       for name, p in model.named_parameters()},
    }


def build_on_meta(cls, config) -> dict:
    """Build `cls(config)` on the meta device (shapes, no memory) and count its parameters.

    Returns what the model's num_parameters() says, the count of its unique parameters,
    their names and shapes, and 'device': 'meta', or 'cpu' when building on meta failed
    and the model had to be built for real.
    """
    try:
        with torch.device("meta"):
            model, device = cls(config), "meta"
    except NotImplementedError:
        raise
    except Exception:  # code that cannot run on meta tensors: pay for the real thing
        model, device = cls(config), "cpu"
    return {
        "num_parameters": model.num_parameters(),
        "unique": sum(p.numel() for p in model.parameters()),
        "shapes": {name: tuple(p.shape) for name, p in model.named_parameters()},
        "device": device,
    }


def generate_seeded(model: torch.nn.Module, idx: torch.Tensor, max_new_tokens: int, seed: int, global_seed: int,
                    **kwargs) -> torch.Tensor:
    """model.generate(idx, max_new_tokens, generator=<a torch.Generator seeded with seed>, **kwargs),
    after seeding torch's global generator with global_seed: a model that samples with the
    generator it is given returns the same tokens whatever global_seed is."""
    torch.manual_seed(global_seed)
    generator = torch.Generator().manual_seed(seed)
    return model.generate(idx, max_new_tokens, generator=generator, **kwargs)


# --- stage 09: the training loop --------------------------------------------------------------

import contextlib  # noqa: E402


class _RecordBackward(torch.autograd.Function):
    """Identity on the way forward; on the way back, writes down whether autocast was on."""

    @staticmethod
    def forward(ctx, x, log):
        ctx.log = log
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        ctx.log.append(torch.is_autocast_enabled(grad.device.type))
        return grad, None


class TinyLM(torch.nn.Module):
    """A small language model for testing training loops: `model(idx, targets) -> (logits, loss)`.

    An embedding and a linear head; the loss is the mean cross-entropy in float32. It writes
    down each forward in `calls` (autocast on and its dtype, the batch size, whether a
    DDP-style `require_backward_grad_sync` was on) and, in `backward_autocast`, whether
    autocast was on while its gradients were computed. Weights come from `seed`.
    """

    def __init__(self, vocab_size: int = 11, n_embd: int = 8, seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.wte = torch.nn.Parameter(torch.randn(vocab_size, n_embd, generator=gen))
        self.head = torch.nn.Linear(n_embd, vocab_size)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(vocab_size, n_embd, generator=gen) / n_embd**0.5)
            self.head.bias.copy_(torch.randn(vocab_size, generator=gen))
        self.require_backward_grad_sync = True
        self.calls: list[dict] = []
        self.backward_autocast: list[bool] = []

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        device = idx.device.type
        enabled = torch.is_autocast_enabled(device)
        self.calls.append({
            "autocast": enabled,
            "autocast_dtype": str(torch.get_autocast_dtype(device)) if enabled else None,
            "grad_enabled": torch.is_grad_enabled(),
            "batch": int(idx.shape[0]),
            "sync": bool(self.require_backward_grad_sync),
        })
        x = _RecordBackward.apply(self.wte[idx], self.backward_autocast)
        logits = self.head(torch.tanh(x))
        if targets is None:
            return logits, None
        return logits, torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


class TinyDDP(TinyLM):
    """TinyLM with DistributedDataParallel's `no_sync()`: inside it, `require_backward_grad_sync`
    is False, as in DDP, whose forward decides whether the coming backward all-reduces."""

    @contextlib.contextmanager
    def no_sync(self):
        before = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = before


class RecordingSGD(torch.optim.SGD):
    """Plain SGD that writes down, at each step, the gradients it sees, the learning rates of
    its groups and whether autocast was on; `events` lists step and zero_grad calls in order."""

    def __init__(self, named_parameters, lr: float = 0.0):
        named = list(named_parameters)
        super().__init__([p for _, p in named], lr=lr)
        self.names = {id(p): n for n, p in named}
        self.steps: list[dict] = []
        self.events: list[str] = []

    def step(self, closure=None):
        grads = {}
        for group in self.param_groups:
            for p in group["params"]:
                grads[self.names[id(p)]] = None if p.grad is None else p.grad.detach().clone()
        self.steps.append({
            "grads": grads,
            "lrs": [float(g["lr"]) for g in self.param_groups],
            "autocast": any(torch.is_autocast_enabled(d) for d in ("cpu", "cuda") if d == "cpu" or torch.cuda.is_available()),
        })
        self.events.append("step")
        return super().step(closure)

    def zero_grad(self, set_to_none: bool = True):
        self.events.append("zero_grad")
        return super().zero_grad(set_to_none=set_to_none)


def run_train_step(train_step, model: torch.nn.Module, steps: list, optimizer_lr: float = 0.0, **kwargs) -> dict:
    """Call a learner's `train_step(model, optimizer, batches, **kwargs)` once per entry of `steps`
    (each a list of (x, y) micro-batches) with a RecordingSGD of learning rate `optimizer_lr`
    (0 by default: the weights stay put, so expected gradients are easy to compute).

    Returns what each call returned ('returned'), what the optimizer saw ('steps', 'events'),
    how the model was called ('calls', 'backward_autocast' where it records them), whether
    gradients were left behind afterwards ('grads_after': name -> norm or None), and the
    weights at the end ('parameters_after'), from which the parent reads what a step applied.
    """
    optimizer = RecordingSGD(model.named_parameters(), lr=optimizer_lr)
    returned = [train_step(model, optimizer, batches, **kwargs) for batches in steps]
    return {
        "returned": returned,
        "steps": optimizer.steps,
        "events": optimizer.events,
        "calls": list(getattr(model, "calls", [])),
        "backward_autocast": list(getattr(model, "backward_autocast", [])),
        "grads_after": {n: (None if p.grad is None else p.grad.norm().item()) for n, p in model.named_parameters()},
        "parameters_after": {n: p.detach().clone() for n, p in model.named_parameters()},
    }


SDPA_ARGS = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")


def attention_calls(fn, *args) -> dict:
    """Which attention functions `fn(*args)` calls: every F.scaled_dot_product_attention call
    with its arguments (tensors as shapes), and how many softmax calls (a (T, T) matrix made by hand)."""
    from torch.overrides import TorchFunctionMode

    def describe(value):
        if isinstance(value, torch.Tensor):
            return {"shape": tuple(value.shape), "dtype": str(value.dtype)}
        return value if isinstance(value, (bool, int, float, str, type(None))) else type(value).__name__

    class Recorder(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.sdpa, self.softmax = [], 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = getattr(func, "__name__", "")
            if name == "scaled_dot_product_attention":
                call = dict(zip(SDPA_ARGS, args))
                call.update(kwargs)
                self.sdpa.append({k: describe(v) for k, v in call.items()})
            elif name in ("softmax", "_softmax", "log_softmax"):
                self.softmax += 1
            return func(*args, **kwargs)

    with Recorder() as recorder:
        fn(*args)
    return {"sdpa": recorder.sdpa, "softmax": recorder.softmax}


def tf32_after(fn) -> dict:
    """Call `fn()` (a learner's configure_tf32) and report torch's float32 matmul settings
    afterwards; then put the settings back as they were, so no other check runs in TF32."""
    try:
        before = torch.get_float32_matmul_precision()
    except RuntimeError:  # settings mixed through the old and new APIs
        before = "highest"
    try:
        returned = fn()
        matmul = torch.backends.cuda.matmul
        try:
            precision = str(matmul.fp32_precision)
        except (AttributeError, RuntimeError):
            precision = "tf32" if matmul.allow_tf32 else "ieee"
        return {"returned": returned, "cuda_matmul": precision}
    finally:
        torch.set_float32_matmul_precision(before)  # restores every backend's flag, old API and new


def with_environment(fn, environment: dict, *args):
    """`fn(*args)` with os.environ changed by `environment` (a value None removes the variable);
    the environment is put back afterwards."""
    import os

    saved = {k: os.environ.get(k) for k in environment}
    try:
        for k, v in environment.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        return fn(*args)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _modules_of(model: torch.nn.Module) -> dict:
    """name -> module object of every class that makes up `model` (found from their functions' globals)."""
    import gc
    import types

    globals_of = {}
    for sub in model.modules():
        for cls in type(sub).__mro__:
            for fn in vars(cls).values():
                g = getattr(fn, "__globals__", None)
                if isinstance(g, dict) and g.get("__name__") == cls.__module__:
                    globals_of[cls.__module__] = g
                    break
    found = {}
    for name, g in globals_of.items():
        for referrer in gc.get_referrers(g):
            if isinstance(referrer, types.ModuleType) and referrer.__dict__ is g:
                found[name] = referrer
        if name not in found:  # the module object itself is gone; its functions keep its globals
            stand_in = types.ModuleType(name)
            stand_in.__dict__.update(g)
            found[name] = stand_in
    return found


def compiled_loss(model: torch.nn.Module, idx: torch.Tensor, targets: torch.Tensor) -> dict:
    """model(idx, targets)'s loss through torch.compile(fullgraph=True), and eagerly.

    The "eager" backend traces with TorchDynamo (a graph break is an error with
    fullgraph=True) without generating code, so it needs no C++ compiler and runs in
    seconds. Returns {'ok', 'loss', 'eager_loss', 'error'}.
    """
    import torch._dynamo

    torch._dynamo.reset()
    eager = model(idx, targets)[1]
    try:
        with _modules_visible(_modules_of(model)):
            compiled = torch.compile(model, backend="eager", fullgraph=True)
            loss = compiled(idx, targets)[1]
    except Exception as exc:  # noqa: BLE001 - what dynamo says is the answer
        text = str(exc).strip().splitlines()
        return {"ok": False, "loss": None, "eager_loss": eager, "error": f"{type(exc).__name__}: {' '.join(text[:6])[:600]}"}
    finally:
        torch._dynamo.reset()
    return {"ok": True, "loss": loss, "eager_loss": eager, "error": ""}


@contextlib.contextmanager
def _modules_visible(modules: dict):
    """Dynamo imports, by name, the module of each function it inlines; the grader's loader
    takes the stage modules out of sys.modules after importing them. Put them back meanwhile
    (only names that are free: another implementation's module of the same name stays)."""
    import sys

    hidden = {name: module for name, module in modules.items() if name not in sys.modules}
    sys.modules.update(hidden)
    try:
        yield
    finally:
        for name in hidden:
            sys.modules.pop(name, None)


def _matmul_precision() -> str:
    try:
        return torch.get_float32_matmul_precision()
    except RuntimeError:
        return "highest"


class StepTrainer:
    """A learner's (or the reference's) stage 09 training step, ready to time: FastGPT2 of `sizes`
    built on `device`, make_optimizer(..., its device type), optionally torch.compile (with
    `backend`), bf16
    autocast, fixed batches. `step()` runs one train_step under the learner's configure_tf32 and
    puts the matmul precision back afterwards. Built by `make_step_trainer` in the process the
    code runs in; the caller times `step()`. The GPU checks run it on "cuda"; the project's CPU
    smoke tests run the same code on "cpu" at tiny sizes."""

    def __init__(self, train, sizes: dict, batch: int, T: int, accum: int, compile: bool, amp: bool, seed: int,
                 device: str, backend: str):
        torch.manual_seed(seed)
        self.device = torch.device(device)
        with self.device:  # built where it runs: the model never sits in host memory on its way to the GPU
            model = train.FastGPT2(train.GPT2Config(**sizes))
        model = model.to(self.device)  # tensors the code made on the CPU on purpose
        self.optimizer = train.make_optimizer(model, 0.1, 6e-4, self.device.type)
        self.model = torch.compile(model, backend=backend) if compile else model
        self.modules = _modules_of(model)  # for torch.compile, at every step: it may recompile
        gen = torch.Generator(device=self.device).manual_seed(seed)
        V = sizes["vocab_size"]
        self.batches = [
            (torch.randint(0, V, (batch, T), device=self.device, generator=gen),
             torch.randint(0, V, (batch, T), device=self.device, generator=gen))
            for _ in range(accum)
        ]
        self.train = train
        self.amp = amp
        self.tokens = batch * T * accum

    def step(self, batches: list | None = None) -> float:
        """One training step on `batches` ((x, y) pairs, moved to the device here; a speed
        check sends new ones for every timed step), or on the fixed batches made at build time."""
        if batches is None:
            batches = self.batches
        else:
            batches = [(x.to(self.device), y.to(self.device)) for x, y in batches]
        before = _matmul_precision()
        try:
            self.train.configure_tf32()
            with _modules_visible(self.modules):
                loss, _ = self.train.train_step(self.model, self.optimizer, batches, max_norm=1.0,
                                                amp_dtype=torch.bfloat16 if self.amp else None)
        finally:
            torch.set_float32_matmul_precision(before)
        _synchronize(self.device)
        return float(loss)


def make_step_trainer(train, sizes: dict, batch: int, T: int, accum: int = 1, compile: bool = True,
                      amp: bool = True, seed: int = 0, warmup: int = 3, device: str = "cuda",
                      backend: str = "inductor") -> StepTrainer:
    """A StepTrainer (see there), already stepped `warmup` times (compilation happens there).
    `backend` is torch.compile's: the GPU checks use inductor; the CPU smoke tests use aot_eager,
    which traces the same graphs without generating C++ (inductor's CPU headers alone are far
    larger than the file size a sandboxed child may write)."""
    trainer = StepTrainer(train, sizes, batch, T, accum, compile, amp, seed, device, backend)
    for _ in range(warmup):
        trainer.step()
    return trainer


def _synchronize(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def float32_matmuls(configure_tf32, n: int, times: int, device: str, seed: int = 0) -> torch.Tensor:
    """`times` products of two (n, n) float32 matrices made from `seed` on `device`, after
    `configure_tf32()` (a learner's), or in full precision when it is None; the precision is
    put back afterwards. Returns the top-left (8, 8) corner of the last product, on the CPU,
    for the caller to check. The caller times it: the GPU check calls it for the learner
    through the handle, with a new seed every run, and for the full-precision baseline in
    the grader's own process."""
    before = _matmul_precision()
    gen = torch.Generator(device=device).manual_seed(seed)
    a = torch.randn(n, n, device=device, generator=gen)
    b = torch.randn(n, n, device=device, generator=gen)
    try:
        if configure_tf32 is None:
            torch.set_float32_matmul_precision("highest")
        else:
            configure_tf32()
        for _ in range(times):
            product = a @ b
        _synchronize(device)
    finally:
        torch.set_float32_matmul_precision(before)
    return product[:8, :8].float().cpu()


def attention_step(attention: torch.nn.Module, batch: int, T: int, C: int, device: str, seed: int = 0) -> torch.Tensor:
    """Forward and backward of `attention` ((B, T, C) -> (B, T, C)) in training mode on `device`,
    under bf16 autocast, for a random x of shape (batch, T, C) made from `seed`. The caller times it: the GPU
    check runs it on the learner's attention through the handle, and on stage 06's masked
    attention with the same weights in the grader's own process."""
    attention = attention.to(device).train()
    gen = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(batch, T, C, device=device, generator=gen, requires_grad=True)
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        out = attention(x)
    out.float().sum().backward()
    _synchronize(device)
    return out[0, :8].detach().float().cpu()  # a corner of the output, for the caller to check


def build_on_device(cls, config, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """`cls(config)` built directly on `device` (every tensor its __init__ makes lands there),
    then cast to `dtype`. A model of hundreds of millions of parameters never sits in host
    memory in float32 on its way to a GPU; on "meta" it takes no memory at all."""
    with torch.device(device):
        model = cls(config)
    return model.to(device=device, dtype=dtype)


# --- general properties (grader/checks/properties.py) ------------------------------------------

import copy  # noqa: E402


def _leaf(value):
    """A floating-point tensor as a fresh leaf that requires grad, as a training loop passes it."""
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.detach().clone().requires_grad_(True)
    return value


def call_reporting_inputs(fn, args: tuple, kwargs: dict, grad_leaves: bool = False) -> dict:
    """fn(*args, **kwargs), and its arguments as they are after the call.

    The arguments the suite sent are copies, so a change made to them in place shows only
    here, in the process where fn runs. With `grad_leaves`, every floating-point tensor
    argument is first made a leaf that requires grad. Returns {'result', 'args', 'kwargs'}.
    """
    if grad_leaves:
        args = tuple(_leaf(a) for a in args)
        kwargs = {k: _leaf(v) for k, v in kwargs.items()}
    result = fn(*args, **kwargs)
    return {"result": result, "args": list(args), "kwargs": dict(kwargs)}


def _describe(value):
    """Tensors as (shape, dtype, device type), so that meta tensors can travel back."""
    if isinstance(value, torch.Tensor):
        return {"shape": tuple(value.shape), "dtype": str(value.dtype), "device": value.device.type}
    if type(value) in (list, tuple):
        return [_describe(v) for v in value]
    if isinstance(value, (bool, int, float, str, type(None))):
        return value
    return type(value).__name__


class _OneDevice(torch.overrides.TorchFunctionMode):
    """Raises where an operation mixes a CPU tensor (more than a scalar) with tensors on another
    device, as a GPU would. The meta device alone lets some of these through (an embedding
    looked up with CPU indices). What a GPU accepts across devices passes: indexing a tensor
    with CPU indices (x[idx]) and copying between devices (copy_)."""

    CROSSES_DEVICES = (torch.Tensor.__getitem__, torch.Tensor.copy_)

    def __init__(self, device: str):
        super().__init__()
        self.device = device

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if func not in self.CROSSES_DEVICES and any(t.device.type == self.device for t in tensors):
            stray = next((t for t in tensors if t.device.type == "cpu" and t.dim() > 0), None)
            if stray is not None:
                name = getattr(func, "__name__", str(func))
                raise RuntimeError(f"{name}: a tensor of shape {tuple(stray.shape)} on device cpu meets tensors on "
                                   f"the expected device {self.device}")
        return func(*args, **kwargs)


def call_moved(fn, args: tuple, kwargs: dict, device: str, dtype: torch.dtype | None = None,
               describe: bool = False):
    """fn(*args, **kwargs) with fn (a copy, when it is an nn.Module) and every tensor argument
    moved to `device`, floating-point ones (and the module's) cast to `dtype` when given.
    On a device other than the CPU, an operation that mixes a CPU tensor with tensors on
    `device` raises. Returns the output, or with `describe` only its tensors' shapes, dtypes
    and devices."""
    if isinstance(fn, torch.nn.Module):
        fn = copy.deepcopy(fn).to(device=device, dtype=dtype) if dtype else copy.deepcopy(fn).to(device)

    def move(value):
        if not isinstance(value, torch.Tensor):
            return value
        return value.to(device=device, dtype=dtype) if dtype and value.is_floating_point() else value.to(device)

    args, kwargs = tuple(move(a) for a in args), {k: move(v) for k, v in kwargs.items()}
    try:
        with contextlib.nullcontext() if device == "cpu" else _OneDevice(device):
            out = fn(*args, **kwargs)
    except (NotImplementedError, RuntimeError) as exc:
        # Reading a value (.item(), .tolist(), bool(t)) is legal code that meta tensors, which
        # have no values, cannot run; said apart, so that it is neither a stub nor a device bug.
        if device == "meta" and "meta tensor" in str(exc):
            raise RuntimeError(f"{READS_VALUES}: {exc}") from exc
        raise
    return _describe(out) if describe else out


READS_VALUES = "reads a tensor's values, which the meta device does not have"
