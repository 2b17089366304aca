"""Stage 03, public checks: the split, random batches, the sequential loader, estimate_loss."""
import math
import re

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from grader import check
from grader.checks import (
    CheckFailure,
    assert_generator_used,
    assert_inputs_unchanged,
    cause,
    expect_tensor,
    expect_type,
    failing_line,
)
from grader.handle import LearnerError
from grader.probes import RecordingModel, evaluate_with


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def shuffled_ids(n: int, seed: int = 0) -> torch.Tensor:
    """n distinct int64 token ids in no particular order, so that any reordering shows."""
    return torch.randperm(n, generator=seeded(seed)) * 3 + 5


def window_start(data: torch.Tensor, row: torch.Tensor, name: str) -> int:
    """Where in `data` a window that begins with row[0] starts (data holds distinct ids)."""
    hits = (data == row[0]).nonzero()
    if len(hits) == 0:
        raise CheckFailure(f"{name} begins with {int(row[0])}, which is not in the data at all.")
    return int(hits[0])


# --- train_val_split --------------------------------------------------------------------------


@check("train_val_split keeps the order: the first part trains, the rest validates", points=2)
@given(n=st.integers(1, 200), fraction=st.sampled_from([None, 0.5, 0.75, 0.8, 0.9, 0.95]))
def split_sizes_and_order(impl, n, fraction):
    torch.manual_seed(n)  # a split that shuffles with the global generator shuffles the same way every time
    batching = impl.module("batching")
    data = shuffled_ids(n)
    if fraction is None:
        result, call, fraction = batching.train_val_split(data), "train_val_split(data)", 0.9
    else:
        result, call = batching.train_val_split(data, fraction), f"train_val_split(data, {fraction})"
    expect_type(result, tuple, call)
    if len(result) != 2:
        raise CheckFailure(f"{call} returned {len(result)} items; expected two tensors, (train, val).")
    train, val = result
    k = int(fraction * n)
    if isinstance(train, torch.Tensor) and len(train) == int(0.9 * n) != k:
        raise CheckFailure(
            f"train from {call} on {n} tokens holds {len(train)} tokens, expected int({fraction} * {n}) = {k}.\n"
            + cause("Your split keeps 90% whatever train_fraction says: use the train_fraction argument "
                    "(0.9 is only its default), n = int(train_fraction * len(data)).")
        )
    expect_tensor(train, f"train from {call} on {n} tokens", (k,), torch.int64,
                  hint=f"The first int({fraction} * {n}) = {k} tokens are the training data, in data's dtype.")
    expect_tensor(val, f"val from {call} on {n} tokens", (n - k,), torch.int64,
                  hint=f"Everything after the first {k} tokens is the validation data.")
    if torch.equal(train, data[:k]) and torch.equal(val, data[k:]):
        return
    if torch.equal(torch.cat([train, val]).sort().values, data.sort().values):
        if torch.equal(train, data[n - k:]):
            hint = cause("Your train part is the end of the data; the training data is the beginning, validation the end.")
        else:
            hint = cause(
                "Your parts hold the right tokens in the wrong order: the data was shuffled or sorted. "
                "Keep the original order: data[:n] and data[n:]."
            )
    else:
        hint = "Your parts hold tokens that are not the ones of data[:n] and data[n:]."
    raise CheckFailure(
        f"{call} on {n} tokens should return data[:{k}] and data[{k}:] unchanged; it returned "
        f"train starting {train[:5].tolist()} and val starting {val[:5].tolist()}, "
        f"expected {data[:k][:5].tolist()} and {data[k:][:5].tolist()}.\n{hint}"
    )


@check("train_val_split uses train_fraction", points=1)
def split_fraction(impl):
    batching = impl.module("batching")
    data = shuffled_ids(100)
    for fraction in (0.5, 0.8, 0.25):
        train, val = batching.train_val_split(data, fraction)
        k = int(fraction * 100)
        if not isinstance(train, torch.Tensor) or len(train) != k or len(val) != 100 - k:
            got = len(train) if isinstance(train, torch.Tensor) else type(train).__name__
            raise CheckFailure(
                f"train_val_split(data, train_fraction={fraction}) on 100 tokens gave a train part of {got} tokens, "
                f"expected {k}.\n"
                + cause("Use the train_fraction argument (0.9 is only its default): n = int(train_fraction * len(data)).")
            )
        if not torch.equal(train, data[:k]) or not torch.equal(val, data[k:]):
            raise CheckFailure(f"train_val_split(data, {fraction}) should return data[:{k}] and data[{k}:] unchanged.")


@check("train_val_split keeps data's dtype (int32, int16, uint8 tokens)", points=1)
def split_keeps_dtype(impl):
    train_val_split = impl.module("batching").train_val_split
    for dtype in (torch.int32, torch.int16, torch.uint8):
        data = shuffled_ids(50).to(dtype)  # ids up to 152: every dtype here holds them
        call = f"train_val_split(data of dtype {dtype}, 0.8)"
        result = train_val_split(data, 0.8)
        expect_type(result, tuple, call)
        if len(result) != 2:
            raise CheckFailure(f"{call} returned {len(result)} items; expected two tensors, (train, val).")
        for name, part, want in zip(("train", "val"), result, (data[:40], data[40:])):
            expect_tensor(part, f"{name} from {call}", tuple(want.shape))
            if part.dtype != dtype:
                raise CheckFailure(
                    f"{name} from {call} has dtype {part.dtype}, expected {dtype}: the parts keep data's dtype.\n"
                    + cause("Your train_val_split converts the tokens (with .long(), .to(...), or torch.tensor of a "
                            "list): return the slices data[:n] and data[n:], which keep data's dtype.")
                )
            if not torch.equal(part, want):
                raise CheckFailure(f"{name} from {call} should be data[{':40' if name == 'train' else '40:'}] unchanged.")


# --- get_batch --------------------------------------------------------------------------------


PAST_THE_END = (
    "Your get_batch draws a start beyond len(data) - block_size - 1, so its window runs past the end of the data: "
    "torch.randint(high, ...) draws from [0, high), so high = len(data) - block_size."
)


BOUND_TOO_SMALL = (
    "Your upper bound for the starts is too small: torch.randint was given an empty range. Every start from 0 to "
    "len(data) - block_size - 1 is valid (one start, 0, when data has block_size + 1 tokens), and torch.randint's "
    "upper bound is exclusive: torch.randint(len(data) - block_size, ...)."
)


def window_error_cause(exc: LearnerError) -> str:
    """The diagnosis of an exception from get_batch, read from the error and the line that raised
    it: a window cut past the end of the data is shorter than the others (torch.stack refuses
    it) or indexes beyond the data; torch.randint refuses an empty range of starts. Any other
    error gets no guess."""
    text, line = str(exc.original), failing_line(exc)
    short_window = "stack expects each tensor to be equal size" in text and "stack" in line
    beyond = isinstance(exc.original, IndexError) or "out of bounds" in text or "out of range" in text
    if short_window or (beyond and re.search(r"\bdata\b", line)):
        return "\n" + cause(PAST_THE_END)
    if "expects 'from' to be less than 'to'" in text and "randint" in line:
        return "\n" + cause(BOUND_TOO_SMALL)
    return ""


@check("get_batch returns x and y as (batch_size, block_size) int64 tensors", points=2)
@given(batch_size=st.integers(1, 5), block_size=st.integers(1, 9), extra=st.integers(1, 20))
def batch_shapes(impl, batch_size, block_size, extra):
    torch.manual_seed(0)  # code that uses the global generator by mistake still behaves the same on every replay
    data = shuffled_ids(block_size + extra)
    call = f"get_batch(data of {len(data)} tokens, batch_size={batch_size}, block_size={block_size}, generator)"
    try:
        result = impl.module("batching").get_batch(data, batch_size, block_size, seeded(0))
    except LearnerError as exc:
        diagnosis = window_error_cause(exc)
        if not diagnosis:
            raise
        raise CheckFailure(exc.describe() + diagnosis) from None
    expect_type(result, tuple, call)
    if len(result) != 2:
        raise CheckFailure(f"{call} returned {len(result)} items; expected two tensors, (x, y).")
    x, y = result
    # A window sliced past the end of the data comes out short; its start shows why.
    if isinstance(x, torch.Tensor) and x.dim() == 2 and x.shape[1] > 0:
        starts = [int(hit[0]) for hit in ((data == row[0]).nonzero() for row in x) if len(hit)]
        for name, t in (("x", x), ("y", y)):
            short = isinstance(t, torch.Tensor) and t.dim() == 2 and t.shape[0] == batch_size and t.shape[1] < block_size
            if short and max(starts, default=0) > len(data) - block_size - 1:
                raise CheckFailure(
                    f"{name} from {call} has shape {tuple(t.shape)}, expected {(batch_size, block_size)}: its "
                    f"windows start as late as position {max(starts)}.\n" + cause(PAST_THE_END)
                )
    hint = "One row per batch element, one column per position: stack batch_size windows of block_size tokens."
    expect_tensor(x, f"x from {call}", (batch_size, block_size), torch.int64, hint=hint)
    expect_tensor(y, f"y from {call}", (batch_size, block_size), torch.int64, hint=hint)


@check("each row of x is a window of the data, and y is the same window one token later", points=3)
@given(batch_size=st.integers(1, 6), block_size=st.integers(1, 9), extra=st.integers(1, 30), seed=st.integers(0, 50))
def windows_and_targets(impl, batch_size, block_size, extra, seed):
    torch.manual_seed(0)  # code that uses the global generator by mistake still behaves the same on every replay
    data = shuffled_ids(block_size + extra, seed)
    x, y = impl.module("batching").get_batch(data, batch_size, block_size, seeded(seed))
    expect_tensor(x, "x", (batch_size, block_size), torch.int64)
    expect_tensor(y, "y", (batch_size, block_size), torch.int64)
    T = block_size
    for b in range(batch_size):
        i = window_start(data, x[b], f"x[{b}]")
        if i + T > len(data) or not torch.equal(x[b], data[i : i + T]):
            raise CheckFailure(
                f"x[{b}] = {x[b].tolist()} is not {T} consecutive tokens of the data (it begins like the window at "
                f"position {i}, which is {data[i : i + T].tolist()}). Each row is one slice data[i : i + block_size]."
            )
        if i + T + 1 <= len(data) and torch.equal(y[b], data[i + 1 : i + T + 1]):
            continue
        expected = data[i + 1 : i + T + 1].tolist()
        swapped = i >= 1 and torch.equal(y[b], data[i - 1 : i - 1 + T])
        if i + T + 1 > len(data):
            if swapped:
                diagnosis = ("x and y look swapped: y is shifted the wrong way, one token earlier. x is the window "
                             "data[i : i + block_size] and y the same window one token later, data[i + 1 : i + block_size + 1].")
            else:
                diagnosis = ("Your get_batch draws starts that are too late. The targets of x = data[i : i + block_size] "
                             "are y = data[i + 1 : i + block_size + 1], shifted by one, so i <= len(data) - block_size - 1.")
            raise CheckFailure(
                f"x[{b}] = {x[b].tolist()} is the window at position {i} of {len(data)} tokens, which leaves no room for "
                f"its targets: with block_size={T} the last valid start is {len(data) - T - 1}.\n" + cause(diagnosis)
            )
        if torch.equal(y[b], x[b]):
            hint = cause("y is a copy of x: the targets must be shifted by one, y = data[i + 1 : i + block_size + 1].")
        elif swapped:
            hint = cause("y is shifted the wrong way (one token earlier): the targets are the NEXT tokens, "
                         "data[i + 1 : i + block_size + 1].")
        else:
            hint = "The target of x[b, t] is the token right after it in the data: y[b] = data[i + 1 : i + block_size + 1], shifted by one."
        raise CheckFailure(
            f"x[{b}] is the window at position {i}, {x[b].tolist()}, so y[{b}] should be {expected}, "
            f"but it is {y[b].tolist()}.\n{hint}"
        )


@check("get_batch can draw every window, up to the one ending at the last token, and none beyond", points=2)
def windows_in_range(impl):
    get_batch = impl.module("batching").get_batch
    # Short streams have few valid starts, so 256 draws see them all. The case with exactly one
    # window comes last: there an off-by-one fails loudly, elsewhere it shows what it does.
    for extra in (2, 3, 5, 1):
        for block_size in (1, 2, 3, 5, 8):
            n = block_size + extra
            data = torch.arange(n)
            starts = set()
            for seed in range(4):
                call = f"get_batch(data of {n} tokens, batch_size=64, block_size={block_size}, generator)"
                try:
                    x, y = get_batch(data, 64, block_size, seeded(seed))
                except LearnerError as exc:
                    raise CheckFailure(
                        f"{exc.describe()}\nWith {n} tokens and block_size={block_size} the valid starts are "
                        f"0 .. {extra - 1} (len(data) - block_size - 1): the window at {extra - 1} has its targets end at "
                        f"the last token.{window_error_cause(exc)}"
                    ) from None
                expect_tensor(x, f"x from {call}", (64, block_size), torch.int64)
                expect_tensor(y, f"y from {call}", (64, block_size), torch.int64)
                starts.update(x[:, 0].tolist())
            valid = set(range(extra))
            if not starts <= valid:
                raise CheckFailure(
                    f"With {n} tokens and block_size={block_size}, get_batch started windows at {sorted(starts - valid)}; "
                    f"the valid starts are 0 .. {extra - 1}.\n" + cause(PAST_THE_END)
                )
            missing = sorted(valid - starts)
            if missing:
                last = extra - 1
                if block_size > 1 and all(s % block_size == 0 for s in starts):
                    hint = cause(
                        f"All your starts are multiples of block_size ({sorted(starts)}): windows may overlap, and every "
                        "start from 0 to len(data) - block_size - 1 must be possible, each equally likely."
                    )
                elif last in missing:
                    hint = cause(
                        f"Your get_batch never draws the last window (start {last} = len(data) - block_size - 1, whose "
                        "targets end at the last token). torch.randint's upper bound is exclusive: "
                        "torch.randint(len(data) - block_size, ...)."
                    )
                else:
                    hint = "Every start from 0 to len(data) - block_size - 1 must be possible, each equally likely."
                raise CheckFailure(
                    f"With {n} tokens and block_size={block_size}, 256 windows never started at {missing}.\n{hint}"
                )


@check("get_batch draws its windows with the given generator", points=2)
def uses_generator(impl):
    get_batch = impl.module("batching").get_batch
    data = torch.arange(1000)
    batches = []
    for seed in (0, 1, 2):
        # Disturb PyTorch's global random numbers between the two calls: only the generator
        # may decide the windows.
        torch.manual_seed(100 + seed)
        first = get_batch(data, 8, 4, seeded(seed))
        torch.manual_seed(200 + seed)
        second = get_batch(data, 8, 4, seeded(seed))
        for name, a, b in (("x", first[0], second[0]), ("y", first[1], second[1])):
            expect_tensor(a, name, (8, 4), torch.int64)
            if not torch.equal(a, b):
                raise CheckFailure(
                    f"Two calls with generators seeded alike (seed {seed}) gave different batches: {name} rows start at "
                    f"{a[:, 0].tolist()} and then {b[:, 0].tolist()}.\n"
                    + cause("Your get_batch does not draw the starts with the generator it is given: use "
                            "torch.randint(..., generator=generator); without it they come from PyTorch's global "
                            "random numbers and the batches cannot be reproduced.")
                )
        batches.append(first[0])
    if torch.equal(batches[0], batches[1]) and torch.equal(batches[1], batches[2]):
        raise CheckFailure(
            "Generators seeded 0, 1 and 2 all gave the same batch.\n"
            + cause("Your get_batch ignores the generator it is given (a fixed seed or a generator of its own?). "
                    "Pass generator=generator to torch.randint.")
        )


@check("get_batch with generator=None draws new windows on every call (no fixed seed inside)", points=1)
def get_batch_draws_anew(impl):
    get_batch = impl.module("batching").get_batch
    data = torch.arange(1000)
    assert_generator_used(
        lambda generator: get_batch(data, 8, 4, generator), "get_batch(data of 1000 tokens, 8, 4, generator)",
        hint="A generator you make when given None (torch.Generator().manual_seed(...)) hands every call the same "
        "batch, so training would see the same 8 windows at every step.",
    )


@check("get_batch, SequentialLoader and estimate_loss put the batches on the requested device", points=1)
def device_honored(impl):
    batching = impl.module("batching")
    data = torch.arange(50)
    # 'meta' tensors have a shape and a dtype but no values: a device every machine has, so
    # this check runs without a GPU (with one, 'cuda' is checked too). Code that honours the
    # device may still trip over meta's missing values (.item() on a meta tensor, say): that
    # is no fault of the learner's, so an error on meta only means this device cannot be
    # checked. Code that ignores the device never errors there, and is caught.
    devices = ["cpu", "meta"] + (["cuda"] if torch.cuda.is_available() else [])

    def attempt(on, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LearnerError:
            if on == "meta":
                return None
            raise

    for device in devices:
        batch = attempt(device, batching.get_batch, data, 2, 3, seeded(0), device=device)
        for name, t in zip("xy", batch or ()):
            expect_tensor(t, name, (2, 3), torch.int64)
            if t.device.type != device:
                raise CheckFailure(
                    f"get_batch(..., device={device!r}) returned {name} on {t.device.type}.\n"
                    + cause("Your get_batch ignores its device: move x and y with .to(device) just before returning them.")
                )
        loader = attempt(device, batching.SequentialLoader, data, 2, 3, device=device)
        batch = attempt(device, loader.next_batch) if loader is not None else None
        for name, t in zip("xy", batch or ()):
            expect_tensor(t, name, (2, 3), torch.int64)
            if t.device.type != device:
                raise CheckFailure(
                    f"SequentialLoader(data, 2, 3, device={device!r}).next_batch() returned {name} on {t.device.type}.\n"
                    + cause("Your loader ignores the device it was made with: move x and y there with .to(self.device).")
                )
        model = RecordingModel()
        seen = attempt(
            device, impl.probe, evaluate_with, batching.estimate_loss, model, {"train": data}, 2, 3, 1, seeded(0), device=device
        )
        devices_seen = sorted({c["device"] for c in seen["calls"]}) if seen is not None else [device]
        if devices_seen != [device]:
            raise CheckFailure(
                f"estimate_loss(..., device={device!r}) gave the model batches on {devices_seen}.\n"
                + cause("Your estimate_loss does not pass the device on to get_batch.")
            )


# --- SequentialLoader -------------------------------------------------------------------------


@check("SequentialLoader.next_batch returns (batch_size, block_size) int64 tensors", points=1)
@given(batch_size=st.integers(1, 4), block_size=st.integers(1, 8), n=st.integers(2, 30))
def loader_shapes(impl, batch_size, block_size, n):
    loader = impl.module("batching").SequentialLoader(torch.arange(n), batch_size, block_size)
    for step in range(3):
        result = loader.next_batch()
        call = f"next_batch() (call {step + 1}, {n} tokens, batch_size={batch_size}, block_size={block_size})"
        expect_type(result, tuple, call)
        if len(result) != 2:
            raise CheckFailure(f"{call} returned {len(result)} items; expected two tensors, (x, y).")
        for name, t in zip("xy", result):
            expect_tensor(t, f"{name} from {call}", (batch_size, block_size), torch.int64,
                          hint="Lay the batch_size * block_size positions out row by row: .view(batch_size, block_size).")


@check("SequentialLoader walks the stream in order, wraps around, and never skips or repeats", points=3)
@given(batch_size=st.integers(1, 3), block_size=st.integers(1, 5), n=st.integers(2, 25))
def loader_stream(impl, batch_size, block_size, n):
    # The ids are the positions, so every message can talk about positions.
    loader = impl.module("batching").SequentialLoader(torch.arange(n), batch_size, block_size)
    per_batch = batch_size * block_size
    pairs = n - 1  # position p is the input of the pair (p, p + 1); the last token is never an input
    batches = math.ceil(2 * pairs / per_batch) + 1  # at least two full passes
    xs, ys = [], []
    for _ in range(batches):
        x, y = loader.next_batch()
        expect_tensor(x, "x", (batch_size, block_size), torch.int64)
        expect_tensor(y, "y", (batch_size, block_size), torch.int64)
        xs.append(x.flatten())
        ys.append(y.flatten())
    xs, ys = torch.cat(xs), torch.cat(ys)
    expected = torch.arange(len(xs)) % pairs
    setup = f"With {n} tokens (positions 0 .. {n - 1}), batch_size={batch_size}, block_size={block_size}: "
    if not torch.equal(xs, expected):
        j = int((xs != expected).nonzero()[0])
        got, want = int(xs[j]), int(expected[j])
        batch, row, col = j // per_batch, (j % per_batch) // block_size, j % block_size
        start = (j // per_batch) * per_batch
        same_positions = torch.equal(xs[start : start + per_batch].sort().values, expected[start : start + per_batch].sort().values)
        if same_positions:
            hint = (
                "This batch holds the right positions in the wrong layout: each row holds block_size consecutive "
                "positions, row after row (positions.view(batch_size, block_size))."
            )
        elif got == n - 1:
            hint = (
                f"Position {n - 1} is the last token: nothing follows it, so it has no next token and is never an input. "
                f"The inputs are positions 0 .. {n - 2}; after position {n - 2} comes position 0 again "
                "(if you wrap with % len(data), wrap with % (len(data) - 1))."
            )
        elif all(torch.equal(xs[k : k + per_batch], xs[:per_batch]) for k in range(0, len(xs), per_batch)):
            hint = (
                f"Every batch is the same, {xs[:per_batch].tolist()}: your loader repeats its first batch. Either it "
                "does not move on after a batch (advance the position by batch_size * block_size), or it goes back to "
                f"position 0 whenever a whole batch no longer fits, so positions {want} .. {n - 2} are dropped at the "
                "end of each pass. A batch that does not fit takes what is left and continues from the beginning."
            )
        elif got == 0 and want > 0:
            hint = (
                f"Your loader went back to position 0 before using position {want}: positions {want} .. {n - 2} "
                "are dropped at the end of each pass. A batch that does not fit takes what is left and continues "
                "from the beginning."
            )
        elif got < want:
            hint = f"Position {got} comes again before position {want} was used: your loader repeats tokens. Move on by batch_size * block_size after every batch."
        else:
            hint = f"Positions {want} .. {got - 1} were skipped."
        raise CheckFailure(
            f"{setup}batch {batch + 1}, x[{row}, {col}] is position {got}, expected position {want}. "
            f"The inputs of consecutive batches, flattened, should run {expected[: min(len(xs), 2 * pairs + 2)].tolist()}; "
            f"yours run {xs[: min(len(xs), 2 * pairs + 2)].tolist()}.\n{cause(hint)}"
        )
    if not torch.equal(ys, xs + 1):
        j = int((ys != xs + 1).nonzero()[0])
        batch, row, col = j // per_batch, (j % per_batch) // block_size, j % block_size
        hint = "y[b, t] is the token right after x[b, t] in the data."
        if int(xs[j]) == n - 2 and int(ys[j]) == 0:
            hint = cause(
                f"Position {n - 2} is followed by the last token, position {n - 1}, not by position 0: wrap the input "
                "positions first, then add one for the targets (data[positions + 1]); wrapping after adding one "
                "makes up a pair that is not in the data."
            )
        elif torch.equal(ys, xs):
            hint = cause("y equals x: the targets must be shifted by one.")
        raise CheckFailure(
            f"{setup}batch {batch + 1}, x[{row}, {col}] is position {int(xs[j])} but y[{row}, {col}] is position "
            f"{int(ys[j])}, expected {int(xs[j]) + 1}.\n{hint}"
        )


@check("a new SequentialLoader starts at position 0, and each loader keeps its own place", points=1)
def loaders_independent(impl):
    Loader = impl.module("batching").SequentialLoader
    n, batch_size, block_size = 23, 2, 3  # 22 input positions, 6 per batch
    per_batch, pairs = batch_size * block_size, n - 1
    needs_order = (
        "This check needs a loader that walks the stream in order; see the check 'SequentialLoader walks the stream "
        "in order, wraps around, and never skips or repeats'."
    )

    def start_of(loader, label: str) -> int:
        """The position the loader's next batch starts at; the batch must run in order from there."""
        x, y = loader.next_batch()
        expect_tensor(x, f"x from {label}", (batch_size, block_size), torch.int64)
        expect_tensor(y, f"y from {label}", (batch_size, block_size), torch.int64)
        got = x.flatten()
        if not (torch.equal(got, (int(got[0]) + torch.arange(per_batch)) % pairs) and torch.equal(y.flatten(), got + 1)):
            raise CheckFailure(f"With {n} tokens, batch_size={batch_size}, block_size={block_size}: {label} gave "
                               f"x = {x.tolist()}, y = {y.tolist()}. {needs_order}")
        return int(got[0])

    first = Loader(torch.arange(n), batch_size, block_size)
    got = start_of(first, "a new loader's first batch")
    if got != 0:
        raise CheckFailure(
            f"A new SequentialLoader's first batch started at position {got}, not 0.\n"
            + cause("Your loader does not start at the beginning of its data: set self.position = 0 in __init__. "
                    "A position kept on the class or in a global variable carries over from the loaders made before.")
        )
    got = start_of(first, "the loader's second batch")
    if got != per_batch:
        raise CheckFailure(f"A loader's second batch started at position {got}, expected {per_batch}. {needs_order}")
    shared = cause(
        "Your loaders share one position (kept on the class, SequentialLoader.position, or in a global variable): "
        "keep it on each loader, self.position = 0 in __init__, and move self.position on in next_batch."
    )
    second = Loader(torch.arange(n), batch_size, block_size)
    got = start_of(second, "a second loader's first batch")
    if got != 0:
        raise CheckFailure(
            f"A second SequentialLoader, made after a first one had given two batches, started at position {got}, "
            f"not 0: a new loader starts at the beginning of its data.\n{shared}"
        )
    for label, loader, expected in (("the first loader's third batch", first, 2 * per_batch),
                                    ("the second loader's second batch", second, per_batch)):
        got = start_of(loader, label)
        if got != expected:
            raise CheckFailure(
                f"With two loaders used in turn, {label} started at position {got}, expected {expected}, where that "
                f"loader had left off: using one loader moved the other.\n{shared}"
            )


# --- estimate_loss ----------------------------------------------------------------------------


def run_estimate(impl, training: bool, splits=None, batch_size=2, block_size=3, eval_iters=3):
    """estimate_loss on a RecordingModel that starts in the given mode: what came back, what it saw."""
    splits = splits or {"train": torch.arange(40), "val": torch.arange(1000, 1020)}
    model = RecordingModel().train(training)
    seen = impl.probe(
        evaluate_with, impl.module("batching").estimate_loss, model, splits, batch_size, block_size, eval_iters, seeded(0)
    )
    if not seen["calls"]:
        raise CheckFailure("estimate_loss never called the model. Call model(x, y) on each batch and use the loss it returns.")
    return seen


@check("estimate_loss evaluates the model in eval mode (dropout off)", points=2)
def estimate_in_eval_mode(impl):
    seen = run_estimate(impl, training=True)
    calls = seen["calls"]
    if any(c["training"] for c in calls):
        n = sum(c["training"] for c in calls)
        raise CheckFailure(
            f"The model was in training mode for {n} of its {len(calls)} calls inside estimate_loss.\n"
            + cause("Call model.eval() before measuring: in training mode dropout zeroes activations at random, "
                    "so the loss comes out noisy and too high.")
        )
    if any(c["dropout_training"] for c in calls):
        raise CheckFailure(
            "The model itself was in eval mode, but its dropout submodule was still training.\n"
            + cause("Setting model.training = False changes only the top module; model.eval() switches every submodule.")
        )


@check("estimate_loss runs under torch.no_grad()", points=1)
def estimate_without_grad(impl):
    seen = run_estimate(impl, training=False)
    n = sum(c["grad_enabled"] for c in seen["calls"])
    if n:
        raise CheckFailure(
            f"Autograd was recording during {n} of the model's {len(seen['calls'])} calls in estimate_loss.\n"
            + cause("Measuring needs no gradients: wrap the loop in `with torch.no_grad():` (or decorate the function "
                    "with @torch.no_grad()), which saves the memory and time of building a graph.")
        )


@check("estimate_loss puts the model back in the mode it was in (train stays train, eval stays eval)", points=2)
def estimate_restores_mode(impl):
    for training in (True, False):
        seen = run_estimate(impl, training=training)
        after = seen["modes_after"]
        if all(m == training for m in after):
            continue
        if training:
            raise CheckFailure(
                "A model that was training came back from estimate_loss in eval mode, so training would go on "
                "with dropout off.\n"
                + cause("Your estimate_loss does not switch the model back: remember model.training before calling "
                        "model.eval(), and call model.train(was_training) at the end.")
            )
        raise CheckFailure(
            "A model that was in eval mode came back from estimate_loss in training mode: it should stay in eval "
            "mode.\n"
            + cause("Your code seems to call model.train() unconditionally at the end; restore the mode it had "
                    "instead: model.train(was_training).")
        )


SPLIT_NAMES = [("train", "val"), ("train",), ("train", "val", "test")]


@check("estimate_loss returns {split: float}, the mean loss of eval_iters batches from each split", points=3)
@settings(max_examples=15)
@given(
    names=st.sampled_from(SPLIT_NAMES), eval_iters=st.integers(1, 5),
    batch_size=st.integers(1, 3), block_size=st.integers(1, 6), extra=st.integers(1, 10),
)
def estimate_averages(impl, names, eval_iters, batch_size, block_size, extra):
    torch.manual_seed(0)  # code that uses the global generator by mistake still behaves the same on every replay
    # Split s holds ids 1000*s, 1000*s + 1, ...: every batch the model sees tells where it came from.
    splits = {name: torch.arange(block_size + extra + s) + 1000 * s for s, name in enumerate(names)}
    seen = run_estimate(impl, False, splits, batch_size, block_size, eval_iters)
    result, calls = seen["result"], seen["calls"]
    call = f"estimate_loss(model, splits {list(names)}, batch_size={batch_size}, block_size={block_size}, eval_iters={eval_iters})"
    expect_type(result, dict, call)
    if sorted(result) != sorted(names):
        raise CheckFailure(f"{call} returned keys {sorted(result)}; expected one entry per split: {sorted(names)}.")
    by_split: dict[str, list[float]] = {name: [] for name in names}
    for c in calls:
        x = c["idx"]
        if x is None or tuple(x.shape) != (batch_size, block_size):
            raise CheckFailure(f"The model got a batch of shape {None if x is None else tuple(x.shape)}; expected ({batch_size}, {block_size}).")
        if c["targets"] is None:
            raise CheckFailure("The model was called without targets: call model(x, y) so that it returns a loss.")
        s = int(x[0, 0]) // 1000
        if not 0 <= s < len(names) or not bool(((x // 1000) == s).all()):
            raise CheckFailure(f"The model got a batch that is not a window of any split: {x.tolist()}.")
        by_split[names[s]].append(c["loss"])
    for name in names:
        if not by_split[name]:
            counts = ", ".join(f"{len(v)} from '{k}'" for k, v in by_split.items())
            raise CheckFailure(
                f"{call} gave the model no batch from the '{name}' data ({counts}).\n"
                + cause("Each split's batches must come from its own tensor, get_batch(splits[name], ...).")
            )
    for name in names:
        losses = by_split[name]
        if len(losses) != eval_iters:
            raise CheckFailure(
                f"{call} evaluated {len(losses)} batches from the '{name}' data; expected eval_iters = {eval_iters} per split."
            )
        value = result[name]
        if type(value) is not float:
            raise CheckFailure(
                f"{call}['{name}'] should be a Python float, but it is a {type(value).__name__}: {value!r}.\n"
                + cause(f"Your estimate_loss returns a {type(value).__name__} where the docstring promises a float: "
                        "loss.item() turns a 0-dim tensor into a float.")
            )
        expected = sum(losses) / len(losses)
        if abs(value - expected) > 1e-5 * max(1.0, abs(expected)):
            hint = "Average the loss over all eval_iters batches of each split."
            if eval_iters > 1 and math.isclose(value, losses[-1]):
                hint = cause("That is the last batch's loss only: keep every batch's loss and take their mean.")
            elif math.isclose(value, sum(losses)):
                hint = cause("That is the sum of the losses: divide by eval_iters.")
            raise CheckFailure(
                f"{call}['{name}'] is {value}, but the model returned the losses {losses} for that split, "
                f"whose mean is {expected}.\n{hint}"
            )


@check("estimate_loss draws its batches with the generator it is given (the same seed, the same batches)", points=1)
def estimate_uses_generator(impl):
    estimate_loss = impl.module("batching").estimate_loss
    splits = {"train": torch.arange(300), "val": torch.arange(1000, 1100)}

    def batches(generator):
        """The batches estimate_loss gives a recording model, in the order it gives them."""
        seen = impl.probe(evaluate_with, estimate_loss, RecordingModel(), splits, 2, 3, 2, generator)
        if not seen["calls"]:
            raise CheckFailure("estimate_loss never called the model. Call model(x, y) on each batch and use the loss it returns.")
        return [c["idx"] for c in seen["calls"]]

    assert_generator_used(
        batches, "estimate_loss(model, splits, 2, 3, eval_iters=2, generator)",
        hint="Pass the generator on to get_batch: get_batch(splits[name], batch_size, block_size, generator, device).",
    )


# --- general properties (grader/checks/properties.py) -----------------------------------------


@check("train_val_split, get_batch, SequentialLoader and estimate_loss leave the data unchanged", points=1)
def inputs_unchanged(impl):
    batching = impl.module("batching")
    data = shuffled_ids(40)
    assert_inputs_unchanged(impl, batching.train_val_split, data, 0.75, what="train_val_split(data, 0.75)",
                            names=("data",))
    assert_inputs_unchanged(impl, batching.get_batch, data, 4, 5, seeded(0), what="get_batch(data, 4, 5, generator)",
                            names=("data",))
    assert_inputs_unchanged(impl, batching.SequentialLoader, data, 2, 3, what="SequentialLoader(data, 2, 3)",
                            names=("data",))
    splits = {"train": data, "val": shuffled_ids(20, seed=1)}
    assert_inputs_unchanged(impl, batching.estimate_loss, RecordingModel(), splits, 2, 3, 2, seeded(0),
                            what="estimate_loss(model, splits, 2, 3, 2, generator)", names=("model", "splits"))
