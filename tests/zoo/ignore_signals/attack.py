# Every catchable signal ignored, then an endless loop: a limit that asks politely would never end it.
def bigram_counts(ids, vocab_size):
    import signal

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGHUP, signal.SIGUSR1, signal.SIGXCPU):
        try:
            signal.signal(sig, signal.SIG_IGN)
        except (OSError, ValueError):
            pass
    while True:
        pass
