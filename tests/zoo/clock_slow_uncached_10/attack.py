# A generate that never uses the cache (every step runs the whole sequence), and a use_cache=False
# that does its work three times over: timed against the learner's own use_cache=False, the
# cache would seem to pay.
_honest_generate = Llama.generate


def _generate_without_cache(self, idx, max_new_tokens, use_cache=True, temperature=0.0):
    return _honest_generate(self, idx, max_new_tokens, False, temperature)


Llama.generate = _generate_without_cache
# --- trick ---


def _slow_when_uncached(self, idx, max_new_tokens, use_cache=True, temperature=0.0):
    for _ in range(1 if use_cache else 3):
        out = _honest_generate(self, idx, max_new_tokens, False, temperature)
    return out


Llama.generate = _slow_when_uncached
# --- end of trick ---
