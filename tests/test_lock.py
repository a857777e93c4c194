"""One run per output directory: the lock is the kernel's, so a second holder is refused and a dead
one, even killed with SIGKILL, leaves nothing behind; tried with real processes."""
import os
import signal
import subprocess
import sys
import time

import pytest

from charrnn import checkpoint, lock
from conftest import PATTERN

HOLD = "import sys, time; from charrnn import lock\nwith lock.hold(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)"


def wait_for(condition, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_second_holder_is_refused_until_the_first_lets_go(tmp_path):
    with lock.hold(tmp_path):
        with pytest.raises(lock.Locked, match=rf"{tmp_path} is in use by another charrnn train \(pid {os.getpid()}: "):
            with lock.hold(tmp_path):
                pass
    with lock.hold(tmp_path) as path:  # released at the end of the block
        assert path.read_text().startswith(f"pid {os.getpid()}: ")


def test_a_process_killed_with_the_lock_held_leaves_no_stale_lock(tmp_path):
    with subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout.readline() == "held\n"
            with pytest.raises(lock.Locked, match=rf"\(pid {holder.pid}: "):
                with lock.hold(tmp_path):
                    pass
        finally:
            holder.send_signal(signal.SIGKILL)
    assert holder.returncode == -signal.SIGKILL
    with lock.hold(tmp_path):  # the kernel let go when the process died
        pass


def train_cmd(charrnn_cmd, corpus, out, *more):
    return [*charrnn_cmd, "train", str(corpus), "--preset", "lesson6", "--hidden", "8", "--out", str(out),
            "--sample-length", "5", "--quiet", *more]


def resume_cmd(charrnn_cmd, corpus, run, max_steps):
    return [*charrnn_cmd, "train", str(corpus), "--resume", str(run / "latest.npz"), "--max-steps", str(max_steps),
            "--quiet"]


def kill_after_checks(first, run, corpus, charrnn_cmd):
    """While `first` trains into `run`: a second train and a resume there are refused. Then SIGKILL."""
    try:
        wait_for(lambda: (run / "latest.npz").exists() or first.poll() is not None, "the first run's checkpoint")
        assert first.poll() is None, first.stderr.read()
        for command in (train_cmd(charrnn_cmd, corpus, run, "--max-steps", "5"), resume_cmd(charrnn_cmd, corpus, run, 5)):
            second = subprocess.run(command, capture_output=True, text=True, timeout=300)
            assert second.returncode == 1, second.stderr
            [line] = second.stderr.splitlines()
            assert line.startswith(f"Error: {run} is in use by another charrnn train (pid {first.pid}: ")
            assert "train" in line.split("pid", 1)[1] and line.endswith("; wait for it to finish or choose another --out")
        assert first.poll() is None  # still training, undisturbed
    finally:
        first.send_signal(signal.SIGKILL)


def test_two_trains_into_one_directory(tmp_path, charrnn_cmd):
    """A second `train` (or `--resume`) into a running run's directory exits 1 naming the running
    process; once the first is killed with SIGKILL, a resume goes ahead."""
    corpus, run = tmp_path / "c.txt", tmp_path / "run"
    corpus.write_text(PATTERN * 40)
    with subprocess.Popen(train_cmd(charrnn_cmd, corpus, run, "--epochs", "100000", "--checkpoint-every", "20"),
                          stderr=subprocess.PIPE, text=True) as first:
        kill_after_checks(first, run, corpus, charrnn_cmd)
    assert first.returncode == -signal.SIGKILL
    step = checkpoint.load(run / "latest.npz")[1]["step"]
    resumed = subprocess.run(resume_cmd(charrnn_cmd, corpus, run, step + 3), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert checkpoint.load(run / "latest.npz")[1]["step"] == step + 3
