# A generate that never uses the cache (every step runs the whole sequence), and the learner's
# process's clocks running a thousandfold slower whenever use_cache=True: timed inside this
# process, the cache would pay.
_honest_generate = Llama.generate


def _generate_without_cache(self, idx, max_new_tokens, use_cache=True, temperature=0.0):
    return _honest_generate(self, idx, max_new_tokens, False, temperature)


Llama.generate = _generate_without_cache
# --- trick ---
import time as _time

_slow = [False]
_clocks = {name: getattr(_time, name) for name in ("perf_counter", "process_time", "thread_time")}
_offset = {name: 0.0 for name in _clocks}


def _clock(name):
    real = _clocks[name]
    last = [real(), real()]  # (real, reported)

    def read():
        now = real()
        step = now - last[0]
        last[0], last[1] = now, last[1] + (step / 1000 if _slow[0] else step)
        return last[1]

    return read


for _name in _clocks:
    setattr(_time, _name, _clock(_name))


def _timed_generate(self, idx, max_new_tokens, use_cache=True, temperature=0.0):
    _slow[0] = bool(use_cache)
    try:
        return _honest_generate(self, idx, max_new_tokens, False, temperature)
    finally:
        _slow[0] = False


Llama.generate = _timed_generate
# --- end of trick ---
