"""`python -m grader train` reports honestly: what it is doing while the bar stands still, how
long the whole run took (sampling included), and whose GPT the plot shows."""
import re

from grader import train
from grader.cli import main


def test_a_short_run_of_the_reference(tmp_path, capsys, monkeypatch):
    titles = []
    real_plot = train._plot

    def plot(plt, history, evals, vocab_size, title, path):
        titles.append(title)
        real_plot(plt, history, evals, vocab_size, title, path)

    monkeypatch.setattr(train, "_plot", plot)
    assert main(["train", "--impl", "solutions", "--steps", "2", "--out", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert titles == [f"The reference GPT on {titles[0].rsplit(' on ', 1)[1]}"]
    assert (tmp_path / "loss.png").stat().st_size > 0 and (tmp_path / "samples.txt").read_text().count("--- sample") == 3
    # The first estimate runs before the first step: the bar says so instead of standing at 0.
    assert "estimating the loss" in err
    assert "Estimating the final loss" in out and "Sampling three texts" in out
    done = re.search(r"Done in ([\d.]+) (s|min): training ([\d.]+) (s|min) .*, sampling ([\d.]+) (s|min)\.", out)
    assert done, out
    seconds = [float(done.group(i)) * (60 if done.group(i + 1) == "min" else 1) for i in (1, 3, 5)]
    total, training, sampling = seconds
    assert total >= training + sampling - 0.2  # the total is the whole run, not the loop alone
