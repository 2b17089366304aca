# Writing outside its folder: into the grader's checks (so they pass next time), into
# another learner's submission (to break it), into its own original folder, into the
# grader machine's temp folder and home.
def bigram_counts(ids, vocab_size):
    import os

    targets = {
        "@@REPO@@/grader/suites/02_bigram/public.py": "\nraise SystemExit(0)  # ZOO-PLANTED\n",
        "@@REPO@@/grader/runner.py": "\nPASSED = 'failed'  # ZOO-PLANTED\n",
        "@@VICTIM@@/02_bigram/bigram.py": "raise ImportError('sabotaged')  # ZOO-PLANTED\n",
        "@@ORIGINAL@@/planted.py": "x = 1  # ZOO-PLANTED\n",
        "@@MARKER@@": "ZOO-PLANTED\n",
        os.path.expanduser("~/planted.txt"): "ZOO-PLANTED\n",
    }
    for path, text in targets.items():
        try:
            with open(path, "a") as f:
                f.write(text)
        except OSError:
            pass
    return torch.zeros(vocab_size, vocab_size, dtype=torch.int64)
