# Waiting forever, using no CPU.
def bigram_counts(ids, vocab_size):
    import time

    while True:
        time.sleep(3600)
