"""Processes of one run stopping together: one killed, a Ctrl-C in one, a coordinator that never
answers (test_devices.py trains two processes as one)."""
import signal
import subprocess
import time

from charrnn import checkpoint
from test_devices import free_port, train_together


def training_on(charrnn_cmd, corpus, out):
    """Two processes of one device each training for long, once process 0 wrote its first checkpoint
    (every 5 updates); returns them and the checkpoint's path."""
    procs = train_together(charrnn_cmd, corpus, out, 2, 1, "--max-steps", "100000", "--checkpoint-every", "5",
                           "--val-frac", "0", "--layers", "1", "--sample-length", "0")
    latest = out / "latest.npz"
    deadline = time.monotonic() + 240
    while not latest.exists() and time.monotonic() < deadline and procs[0].poll() is None:
        time.sleep(0.2)
    assert latest.exists(), procs[0].communicate()[1]
    return procs, latest


def test_a_killed_process_stops_the_other(charrnn_cmd, corpus, tmp_path):
    procs, latest = training_on(charrnn_cmd, corpus, tmp_path / "run")
    procs[1].kill()
    procs[1].communicate()
    _, err = procs[0].communicate(timeout=60)  # JAX's own runtime would wait 100 s, then abort
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert procs[0].returncode == 1 and len(errors) == 1 and "Traceback" not in err, err
    assert "another process of the run stopped answering" in errors[0] and "the last checkpoint" in errors[0]
    params, meta = checkpoint.load(latest)
    assert meta["step"] % 5 == 0 and params


def test_ctrl_c_in_one_process_stops_both_with_one_checkpoint(charrnn_cmd, corpus, tmp_path):
    procs, latest = training_on(charrnn_cmd, corpus, tmp_path / "run")
    procs[1].send_signal(signal.SIGINT)
    (_, err0), (_, err1) = (p.communicate(timeout=120) for p in procs)
    assert [p.returncode for p in procs] == [130, 130], err0 + err1
    step = checkpoint.load(latest)[1]["step"]
    assert f"stopped by SIGINT after {step} updates; checkpoint {latest}" in err0  # written by process 0


def test_an_unreachable_coordinator_is_one_line(charrnn_cmd, corpus, tmp_path):
    start, address = time.monotonic(), f"127.0.0.1:{free_port()}"
    result = subprocess.run([*charrnn_cmd, "train", str(corpus), "--out", str(tmp_path), "--coordinator",
                             address, "--num-processes", "2", "--process-id", "1",
                             "--coordinator-timeout", "2s"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and time.monotonic() - start < 60
    assert result.stderr.strip().splitlines() == [
        f"Error: process 1 could not reach the coordinator {address} within 2 s; start process 0 there "
        f"first (or check the address and the firewall)"]
