# A busy endless loop.
def bigram_counts(ids, vocab_size):
    while True:
        pass
