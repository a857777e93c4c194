"""Exact resume, the divergence guard and the stops, through real training runs."""
import json
import math
import os
import re
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import checkpoint
from charrnn.cli import cli
from charrnn.train import RunLog
from conftest import PATTERN, tmpfs

SMALL = ["--cell", "gru", "--layers", "2", "--hidden", "16", "--batch-size", "4", "--seq-len", "8",
         "--dropout", "0.2", "--log-every", "1", "--eval-every", "7", "--checkpoint-every", "1000",
         "--sample-length", "0", "--quiet"]  # no samples: nothing compiled for them


def train(tmp_path, out, *args):
    result = CliRunner().invoke(cli, ["train", str(tmp_path / "c.txt"), *SMALL, "--out", str(tmp_path / out), *args])
    assert result.exit_code == 0, result.stderr
    return result


def losses(run_dir, key="loss"):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r[key] for r in records if key in r}


def ctrl_c_after(monkeypatch, step):
    """SIGINT arrives while update `step` is being logged, as a Ctrl-C would: the run stops there
    and writes latest.npz."""
    close = RunLog.close_window

    def close_window(self, state, lr):
        close(self, state, lr)
        if state.step == step:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(RunLog, "close_window", close_window)


# char-rnn's schedule decaying from the second epoch on, the first part stopped by its own --max-steps
# and resumed with a larger one; cosine over --max-steps 40, the first part stopped by a Ctrl-C.
# --unroll may change on resume, since it changes nothing but the speed.
CASES = {"char-rnn": ("adam", ["--lr-schedule", "char-rnn", "--lr-decay-after", "1", "--lr-decay", "0.5"], "2"),
         "cosine": ("momentum", ["--lr-schedule", "cosine", "--warmup", "5"], "1")}


@pytest.mark.parametrize("schedule", list(CASES))
def test_resume_continues_exactly(tmp_path, schedule, monkeypatch):
    """Dropout included (its masks follow from the update's number)."""
    (tmp_path / "c.txt").write_text(PATTERN * 40)  # 520 characters: 16 batches of 4 x 8 per epoch
    optimizer, options, unroll = CASES[schedule]
    train(tmp_path, "whole", "--optimizer", optimizer, *options, "--max-steps", "40")
    if schedule == "cosine":
        ctrl_c_after(monkeypatch, 23)
        result = CliRunner().invoke(cli, ["train", str(tmp_path / "c.txt"), *SMALL, "--out", str(tmp_path / "split"),
                                          "--optimizer", optimizer, *options, "--max-steps", "40"])
        assert result.exit_code == 130, result.stderr
        monkeypatch.undo()
    else:
        train(tmp_path, "split", "--optimizer", optimizer, *options, "--max-steps", "23")  # stops mid-epoch
    assert checkpoint.load(tmp_path / "split" / "latest.npz")[1]["step"] == 23
    train(tmp_path, "split", "--resume", str(tmp_path / "split" / "latest.npz"), "--max-steps", "40",
          "--unroll", unroll)
    whole, split = losses(tmp_path / "whole"), losses(tmp_path / "split")
    assert sorted(split) == list(range(1, 41))  # the resumed run appended to the same metrics.jsonl
    np.testing.assert_allclose([split[s] for s in range(1, 41)], [whole[s] for s in range(1, 41)], rtol=1e-6)
    lrs, want = losses(tmp_path / "split", "lr"), losses(tmp_path / "whole", "lr")
    assert [lrs[s] for s in range(1, 41)] == [want[s] for s in range(1, 41)]  # the same learning rates, exactly
    assert len(set(want.values())) > 2 and want[40] < want[20] < 2e-3  # and the schedule did change them
    val_whole, val_split = losses(tmp_path / "whole", "val_loss"), losses(tmp_path / "split", "val_loss")
    assert sorted(val_split) == sorted([*val_whole, 23])  # the first invocation validated when it stopped
    np.testing.assert_allclose([val_split[s] for s in val_whole], list(val_whole.values()), rtol=1e-6)
    a, meta_a = checkpoint.load(tmp_path / "whole" / "latest.npz")
    b, meta_b = checkpoint.load(tmp_path / "split" / "latest.npz")
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-6, atol=1e-7, err_msg=name)
    assert meta_b["step"] == 40 and meta_b["epoch"] == pytest.approx(meta_a["epoch"])


def test_a_time_based_cosine_follows_the_clock_and_resumes_from_its_progress(tmp_path):
    """The learning rates depend on the machine's speed, so only what holds on any machine is checked."""
    # Text without a pattern to learn, so the loss stays near its start and no window trips char-rnn's 3x rule
    # (a network that learns PATTERN by heart does, at each epoch's start, however fast the machine is).
    rng = np.random.default_rng(0)
    (tmp_path / "c.txt").write_text("".join(rng.choice(list("abcdefgh \n"), size=520)))
    options = ["--lr-schedule", "cosine", "--lr", "2e-3", "--warmup", "0", "--epochs", "1000", "--max-time", "3s",
               "--log-every", "16"]  # a rate given: auto's would change once it is chosen
    train(tmp_path, "run", *options)
    first = [lr for _, lr in sorted(losses(tmp_path / "run", "lr").items())]
    _, meta = checkpoint.load(tmp_path / "run" / "latest.npz")
    progress = meta["resume"]["progress"]
    assert first == sorted(first, reverse=True) and 0 < progress <= 1 and meta["step"] < 16 * 1000 * progress
    at_end = 2e-3 * (0.1 + 0.9 * (1 + math.cos(math.pi * progress)) / 2)  # the last update's
    assert first[-1] >= at_end * (1 - 1e-9)  # logged at the last update, or before it
    train(tmp_path, "run", "--resume", str(tmp_path / "run" / "latest.npz"), "--max-time", "2s")
    resumed = [lr for step, lr in sorted(losses(tmp_path / "run", "lr").items()) if step > meta["step"]]
    assert resumed and resumed == sorted(resumed, reverse=True) and resumed[0] <= at_end * (1 + 1e-9)  # on from there


@pytest.fixture(scope="module")
def resumable(tmp_path_factory):
    """A run of 5 updates on c.txt (in its directory), and corpora it must not resume on."""
    path = tmp_path_factory.mktemp("resumable")
    (path / "c.txt").write_text(PATTERN * 40)
    (path / "other.txt").write_text(PATTERN * 41)
    (path / "new-chars.txt").write_text(PATTERN * 40 + "XYZ")
    train(path, "run", "--max-steps", "5")
    return path


def test_sample_length_0_checkpoints_without_samples(resumable):
    run = resumable / "run"
    assert (run / "latest.npz").exists() and (run / "samples.txt").read_text() == ""


@pytest.mark.parametrize("args,code,message", [
    (["other.txt"], 1, "not the corpus"),
    (["new-chars.txt"], 1, "vocabulary lacks 'X' 'Y' 'Z'"),
    (["c.txt", "--hidden", "32"], 2, "--hidden cannot change on --resume"),
    (["c.txt", "--preset", "lesson6"], 2, "--preset cannot be combined"),
    (["c.txt", "--resume", "none.npz"], 1, "no checkpoint at"),
])
def test_resume_refuses_another_corpus_or_fixed_options(resumable, args, code, message):
    ckpt = resumable / "run" / "latest.npz"
    before = ckpt.read_bytes()
    resume = ["--resume", str(resumable / args[2])] if args[1:2] == ["--resume"] else ["--resume", str(ckpt), *args[1:]]
    result = CliRunner().invoke(cli, ["train", str(resumable / args[0]), *resume])
    assert result.exit_code == code and message in result.stderr, (args, result.stderr)
    assert ckpt.read_bytes() == before  # nothing saved was touched


def test_resume_takes_a_new_learning_rate(resumable, tmp_path):
    shutil.copytree(resumable / "run", tmp_path / "run")
    ckpt = str(tmp_path / "run" / "latest.npz")
    result = CliRunner().invoke(cli, ["train", str(resumable / "c.txt"), "--resume", ckpt, "--max-steps", "8",
                                      "--lr", "0.001", "--quiet"])  # lr may change
    assert result.exit_code == 0, result.stderr
    _, meta = checkpoint.load(ckpt)
    assert meta["step"] == 8 and meta["train"]["lr"] == 0.001


def diverging_run(tmp_path, log_every, checkpoint_every):
    """The lines of a lesson6 run at lr 1e6 that say the learning rate was halved; the run itself
    must have aborted after the third divergence with nothing of it saved."""
    (tmp_path / "c.txt").write_text(PATTERN * 40)
    result = CliRunner().invoke(cli, ["train", str(tmp_path / "c.txt"), "--preset", "lesson6", "--hidden", "16",
                                      "--lr", "1e6", "--epochs", "5", "--log-every", log_every,
                                      "--checkpoint-every", checkpoint_every, "--out", str(tmp_path / "run")])
    assert result.exit_code == 1, result.stderr
    assert "the third time in a row" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "latest.npz").exists()  # nothing diverged was written
    return [line for line in result.stderr.splitlines() if "learning rate halved" in line]


def test_divergence_guard_halves_the_lr_and_aborts_after_three(tmp_path):
    halvings = diverging_run(tmp_path, "2", "1000")
    assert len(halvings) == 2 and "5e+05" in halvings[0] and "2.5e+05" in halvings[1]


def test_the_guard_reads_every_loss_before_a_checkpoint(tmp_path):
    """Losses are read at log lines, and before any checkpoint: with a checkpoint due every 3 updates
    and no log line before update 1000, a loss that turned non-finite is still caught before it is
    saved (and the update where it happened is named)."""
    halvings = diverging_run(tmp_path, "1000", "3")
    assert len(halvings) == 2 and all(re.match(r"the loss became (nan|inf) at update [23]: back to update 0", line)
                                      for line in halvings), halvings


def test_patience_stops_when_validation_stops_improving(tmp_path):
    (tmp_path / "c.txt").write_text(PATTERN * 40)
    train(tmp_path, "run", "--lr", "1e-9", "--optimizer", "sgd", "--patience", "2", "--eval-every", "1",
          "--epochs", "100")
    _, meta = checkpoint.load(tmp_path / "run" / "latest.npz")
    assert meta["step"] < 10  # an lr of 1e-9 cannot improve; two evaluations without improvement stop it


def test_kill_9_leaves_loadable_checkpoints(tmp_path, charrnn_cmd):
    (tmp_path / "c.txt").write_text(PATTERN * 300)
    out = tmp_path / "run"
    proc = subprocess.Popen([*charrnn_cmd, "train", str(tmp_path / "c.txt"), "--preset", "lesson6", "--hidden", "32",
                             "--epochs", "1000", "--val-frac", "0.1", "--eval-every", "3", "--checkpoint-every", "3",
                             "--sample-length", "2", "--out", str(out), "--quiet"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "best.npz").exists():
        time.sleep(0.05)
    time.sleep(1.0)  # well into a stream of checkpoint writes, every 3 updates
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for name in ("latest.npz", "best.npz"):
        params, meta = checkpoint.load(out / name)
        assert meta["step"] > 0 and all(np.isfinite(a).all() for a in params.values())


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A real 8 MB tmpfs."""
    with tmpfs(tmp_path / "tiny", "size=8m") as mount:
        yield mount


def test_a_full_disk_keeps_the_previous_checkpoint(tmp_path, tiny_filesystem):
    (tmp_path / "c.txt").write_text(PATTERN * 40)
    run = tiny_filesystem / "run"
    train(tmp_path, run, "--max-steps", "3")
    before = (run / "latest.npz").read_bytes()
    stat = os.statvfs(tiny_filesystem)
    free = stat.f_bavail * stat.f_frsize
    with open(tiny_filesystem / "filler", "wb") as f:  # leave room for logs, not for another checkpoint
        f.write(b"\0" * (free - len(before) // 2))
    result = CliRunner().invoke(cli, ["train", str(tmp_path / "c.txt"), *SMALL, "--max-steps", "3", "--out", str(run)])
    assert result.exit_code == 1, result.stderr
    assert "cannot write in" in result.stderr and "No space left on device" in result.stderr
    assert "Traceback" not in result.stderr
    assert (run / "latest.npz").read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == [".lock", "best.npz", "latest.npz", "metrics.jsonl",
                                                     "samples.txt"]


def test_divergence_guard_applies_char_rnns_3x_rule(tmp_path):
    """A loss that jumps to more than 3x the best window's counts as divergence too: here the text
    turns from one repeated character to a varied one, which no learning rate can follow."""
    (tmp_path / "c.txt").write_text("a" * 4000 + (PATTERN * 40))
    result = CliRunner().invoke(cli, ["train", str(tmp_path / "c.txt"), "--preset", "lesson6", "--hidden", "16",
                                      "--log-every", "10", "--checkpoint-every", "100000", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if "more than 3x the best" in line]
    assert len(lines) == 3 and "learning rate halved to 0.005" in lines[0] and "the third time in a row" in lines[2]
