# Writing a forged answer straight into the pipe to the grader: a pickle that runs a
# command when unpickled. The grader never unpickles what the child sends.
class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("touch @@MARKER@@",))


def bigram_counts(ids, vocab_size):
    import gc
    import os
    import pickle
    import struct

    evil = pickle.dumps({"seq": 0, "ok": _Payload()})
    servers = [o for o in gc.get_objects() if type(o).__name__ == "Server" and hasattr(o, "fd_out")]
    fds = [s.fd_out for s in servers] or list(range(3, 12))
    for fd in fds:
        try:
            os.write(fd, struct.pack(">Q", len(evil)) + evil)
        except OSError:
            pass
    return torch.zeros(vocab_size, vocab_size, dtype=torch.int64)
