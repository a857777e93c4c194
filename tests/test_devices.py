"""Training on several devices and several processes (charrnn/devices.py). XLA presents this CPU as
N devices when XLA_FLAGS says so before JAX starts, so every multi-device run is a subprocess: the
sharded step against the one-device step, real `charrnn train` runs on 1, 2 and 4 devices, two real
processes meeting on 127.0.0.1 (test_processes.py stops them), and bad input."""
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import checkpoint, devices, model, train
from charrnn.cli import cli
from charrnn.configs import build_configs

SMALL = ["--cell", "gru", "--layers", "2", "--hidden", "16", "--batch-size", "8", "--seq-len", "8",
         "--dropout", "0.2", "--log-every", "1", "--eval-every", "5", "--checkpoint-every", "6",
         "--sample-length", "5", "--val-frac", "0.1", "--lr-schedule", "char-rnn",  # resumed with a new --max-steps
         "--precision", "float32"]  # compared update by update at float32's tolerances (bfloat16's: below)


def env(n_devices):
    """The environment of a subprocess whose JAX sees `n_devices` CPU devices."""
    return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={n_devices}"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def losses(run_dir):
    """{step: loss} of every update (SMALL logs each one), and the validation losses."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return ({r["step"]: r["loss"] for r in records if "loss" in r},
            {r["step"]: r["val_loss"] for r in records if "val_loss" in r})


def assert_same_run(got, want):
    """Per-update losses equal to 1e-5, and the same checkpoint (weights, optimizer state, carried state)."""
    (got_loss, got_val), (want_loss, want_val) = losses(got), losses(want)
    assert sorted(got_loss) == sorted(want_loss) and want_val.keys() <= got_val.keys()  # a stop validates too
    for step, loss in want_loss.items():
        assert got_loss[step] == pytest.approx(loss, abs=1e-5), step
    for step, loss in want_val.items():
        assert got_val[step] == pytest.approx(loss, abs=1e-5), step
    (a, meta_a, extra_a), (b, meta_b, extra_b) = (checkpoint.load(d / "latest.npz", extras=True) for d in (got, want))
    assert meta_a["step"] == meta_b["step"] and a.keys() == b.keys() and extra_a.keys() == extra_b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], atol=1e-5, rtol=0)
    for name in extra_a:
        np.testing.assert_allclose(extra_a[name], extra_b[name], atol=1e-5, rtol=0)


def charrnn(charrnn_cmd, corpus, out, n_devices, *args):
    """A `charrnn train` run on SMALL whose JAX sees `n_devices` CPU devices, its stderr a terminal
    (so that the progress bar is drawn); returns what it wrote there."""
    import fcntl
    import pty
    import struct
    import termios

    parent, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # tqdm draws nothing in 0 columns
    proc = subprocess.Popen([*charrnn_cmd, "train", str(corpus), *SMALL, "--out", str(out), *args],
                            env=env(n_devices), stdout=subprocess.DEVNULL, stderr=child)
    os.close(child)
    err = b""
    while chunk := _read(parent):
        err += chunk
    os.close(parent)
    assert proc.wait(timeout=300) == 0, err.decode()
    return err.decode()


def _read(fd):
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the child closed the terminal
        return b""


@pytest.fixture(scope="module")
def one_device(tmp_path_factory, charrnn_cmd, corpus):
    """14 updates on one device (over an epoch's end, with validation, checkpoints and samples)."""
    out = tmp_path_factory.mktemp("runs") / "one"
    charrnn(charrnn_cmd, corpus, out, 1, "--max-steps", "14")
    return out


def test_four_then_two_devices_train_as_one(one_device, charrnn_cmd, corpus, tmp_path):
    """8 updates on 4 devices, resumed on 2 for the other 6: the one-device run, update by update."""
    first = charrnn(charrnn_cmd, corpus, tmp_path, 4, "--devices", "4", "--max-steps", "8")
    assert "compiling the training step with the jax backend on 4 x cpu..." in first
    assert "jax on 4 x cpu: 100%" in first  # the progress bar names the devices
    charrnn(charrnn_cmd, corpus, tmp_path, 2, "--devices", "all", "--resume", str(tmp_path / "latest.npz"),
            "--max-steps", "14")
    assert_same_run(tmp_path, one_device)
    assert checkpoint.load(tmp_path / "latest.npz")[1]["train"]["devices"] == 2


STEP_BY_STEP = textwrap.dedent("""
    import json, re, sys
    import numpy as np
    from dataclasses import replace
    from charrnn import devices, model, optim, train
    from charrnn.configs import build_configs
    from charrnn.corpus import BatchStream

    rng = np.random.default_rng(0)
    stream = BatchStream(rng.integers(0, 20, 2000).astype(np.int32), 8, 6)
    report = {}
    # the LSTM (two states per layer) with its products in bfloat16 and two time steps per scan iteration
    # (the GRU in float32 on 4 and 2 devices: test_four_then_two_devices_train_as_one, update by update)
    cell, products, unroll = "lstm", "bfloat16", 2
    for n in (1, 2):
        model_cfg, cfg = build_configs(20, cell=cell, hidden=8, layers=2, dropout=0.2, batch_size=8, seq_len=6,
                                       devices=n, precision=products, unroll=unroll)
        params = model.shared_params(model.init_params(model_cfg, 0))
        opt = optim.optimizer_state(cfg.optimizer, params)
        step = train.compile_train_step(params, opt, model_cfg, cfg)
        states, losses = train.zero_states(model_cfg, 8, "float32"), []
        for k in range(6):
            if k == 4:  # the divergence guard going back: values set on the host reach the devices
                devices.to_host(step)
                for name, p in params.items():
                    p.set_value(first[name])
            x, y, w = stream.batch(k)
            key = [np.uint32(k)]  # the dropout masks' (made in the update)
            loss, states = step(x, y, w, states, *key, np.float32(0.01))
            losses.append(float(loss))
            if k == 0:
                devices.to_host(step)
                first = {name: p.get_value() for name, p in params.items()}
        devices.to_host(step)
        result = {"losses": losses, "W_h": params["W_h"].get_value().tolist(),
                  "states": devices.gather(states).tolist(), "sharded": step.sharded}
        if n > 1:  # which collectives XLA put in the compiled step
            text = step.compiled_text(x, y, w, states, *key, np.float32(0.01))
            result["collectives"] = sorted(set(re.findall(r"(all-reduce|all-gather|all-to-all|"
                                                          r"collective-permute|reduce-scatter)\\(", text)))
        report[f"{cell} {n}"] = result
    json.dump(report, sys.stdout)
""")


@pytest.fixture(scope="module")
def step_by_step():
    """What STEP_BY_STEP reports, run once in a process whose JAX sees 2 CPU devices."""
    result = subprocess.run([sys.executable, "-W", "error", "-c", STEP_BY_STEP], env=env(2), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("cell,n", [("lstm", 2)])
def test_sharded_step_equals_the_one_device_step(step_by_step, cell, n):
    one, many = step_by_step[f"{cell} 1"], step_by_step[f"{cell} {n}"]
    assert (one["sharded"], many["sharded"]) == (False, True)
    # Summing the devices' gradients in another order changes the weights in the last float32 bits; with
    # float32 products the runs then agree to 6e-8. With bfloat16 products such a difference can, rarely,
    # move a product's input across a bfloat16 rounding boundary (0.4-0.8% apart): with seed 0 one did at update
    # 3, and the runs ended 5e-6 apart in the losses, 1.6e-5 in W_h and 1.2e-4 in the states (seeds 1-4:
    # 1e-7). A missing all-reduce, each device stepping on its own streams' gradient, ends 0.04, 0.05 and 0.15
    # apart (measured with the other half's weights set to zero): the tolerances sit over 10x above the flip and
    # 75-400x below that.
    np.testing.assert_allclose(many["losses"], one["losses"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(many["W_h"], one["W_h"], atol=2e-4, rtol=0)
    np.testing.assert_allclose(many["states"], one["states"], atol=2e-3, rtol=0)


@pytest.mark.parametrize("cell,n", [("lstm", 2)])
def test_the_only_communication_is_the_all_reduce(step_by_step, cell, n):
    """No stream is gathered onto another device: each device works on its own streams, and the
    loss and the gradients are summed over devices (model.positions, devices.FLATTENING)."""
    assert step_by_step[f"{cell} {n}"]["collectives"] == ["all-reduce"]


def train_together(charrnn_cmd, corpus, out, n_processes, devices_each, *args, port=None):
    """Start `n_processes` real `charrnn train` processes meeting at 127.0.0.1."""
    port = port or free_port()
    return [subprocess.Popen([*charrnn_cmd, "train", str(corpus), *SMALL, "--out", str(out),
                              "--coordinator", f"127.0.0.1:{port}", "--num-processes", str(n_processes),
                              "--process-id", str(i), "--coordinator-timeout", "60s", *args],
                             env=env(devices_each), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(n_processes)]


def test_two_processes_train_as_one(one_device, charrnn_cmd, corpus, tmp_path):
    """Two processes of 2 devices each: the run one process on one device makes, written by process 0 alone."""
    procs = train_together(charrnn_cmd, corpus, tmp_path / "run", 2, 2, "--max-steps", "14")
    (out0, err0), (out1, err1) = (p.communicate(timeout=300) for p in procs)
    assert [p.returncode for p in procs] == [0, 0], err0 + err1
    assert_same_run(tmp_path / "run", one_device)
    assert "on 4 x cpu in 2 processes" in err0 and err1 == ""  # process 1 says nothing
    assert out0 == out1 == ""  # nor does gloo, on stdout


def run(*args):
    result = CliRunner().invoke(cli, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.mark.parametrize("args,option,message", [
    (["--devices", "0"], "--devices", "'0' is neither all nor a positive number of devices"),
    (["--devices", "2"], "--devices", "2 devices asked for, but JAX sees 1 (cpu); give all or fewer"),
    (["--devices", "4", "--batch-size", "6"], "--batch-size",
     "6 streams do not split evenly over 4 devices: give a multiple of 4 (like 4)"),
    (["--devices", "2", "--backend", "c"], "--devices", "2 devices need the jax backend (the c backend runs on one)"),
    (["--coordinator", "10.0.0.1"], "--coordinator", "'10.0.0.1' is not HOST:PORT (like 10.0.0.1:7777)"),
    (["--coordinator", "10.0.0.1:99999"], "--coordinator", "'10.0.0.1:99999' is not HOST:PORT"),
    (["--coordinator", "no-such-host.invalid:7777"], "--coordinator", "there is no host no-such-host.invalid"),
    (["--num-processes", "2", "--process-id", "2", "--coordinator", "127.0.0.1:7777"], "--process-id",
     "2 is out of range for 2 processes (the ids are 0 to 1)"),
])
def test_bad_device_and_process_choices(corpus, tmp_path, args, option, message):
    result = run("train", str(corpus), "--out", str(tmp_path / "run"), *args)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2 and len(errors) == 1 and f"'{option}'" in errors[0] and message in errors[0], \
        result.stderr
    assert not (tmp_path / "run").exists()


def test_one_device_keeps_the_weights_on_the_device_between_updates():
    """--devices 1 (the default) with the jax backend: the step is jitted unsharded, with the
    weights on the device in one buffer, donated to the next update; the shared variables hold
    the host's copy until to_host brings the devices' values back, and a value set on the host
    goes to the device with the next update."""
    import jax

    model_cfg, cfg = build_configs(5, hidden=4, layers=1, dropout=0.0, batch_size=2, seq_len=3, optimizer="sgd")
    assert devices.settle(cfg) is cfg and devices.describe(cfg) == "cpu"
    assert devices.agree(1, 0) == (1, 0) and devices.from_process_0(0.1) == 0.1
    params = model.shared_params(model.init_params(model_cfg, 0))
    step = train.compile_train_step(params, {}, model_cfg, cfg)
    assert isinstance(step, devices.DeviceFunction) and not step.sharded
    before = params["W_h"].get_value().copy()
    x = np.array([[0, 1], [2, 3], [4, 0]], np.int32)
    args = (x, np.roll(x, -1, 0), np.ones((3, 2), np.float32), train.zero_states(model_cfg, 2, "float32"))
    step(*args, np.float32(0.5))
    assert len(step.values) == 1  # the weights as one flat buffer
    on_device = step.values[0]
    step(*args, np.float32(0.5))
    assert isinstance(on_device, jax.Array) and on_device.is_deleted()  # donated to the second update
    np.testing.assert_array_equal(params["W_h"].get_value(), before)  # not read back yet
    devices.to_host(step)
    after = params["W_h"].get_value()
    assert not np.allclose(after, before)
    params["W_h"].set_value(before)  # as the divergence guard goes back: the next update starts from it
    step(*args, np.float32(0.0))
    devices.to_host(step)
    np.testing.assert_array_equal(params["W_h"].get_value(), before)
    stale = params["W_y"].get_value()
    step(*args, np.float32(0.5))  # the device ahead of the host again; then one variable set on the host
    ahead = dict(zip((step.shared[i].name for i in step.packing.slots[0]), step.packing.pieces(0, step.values[0])))
    assert not np.allclose(ahead["W_y"], stale)
    params["W_h"].set_value(before)
    step(*args, np.float32(0.0))
    devices.to_host(step)
    for name, p in params.items():  # the others keep the device's values, not the host's older ones
        np.testing.assert_array_equal(p.get_value(), before if name == "W_h" else ahead[name], err_msg=name)


def test_positions_by_stream_keep_each_streams_rows_together():
    import pytensor.tensor as pt

    v = pt.tensor("v", dtype="int32", shape=(3, 2, 1))
    data = np.arange(6, dtype=np.int32).reshape(3, 2, 1)  # data[t, b] = 2t + b
    assert model.positions(v).eval({v: data}).ravel().tolist() == [0, 1, 2, 3, 4, 5]
    assert model.positions(v, by_stream=True).eval({v: data}).ravel().tolist() == [0, 2, 4, 1, 3, 5]


def test_random_generators_advance_on_the_devices_as_in_pytensors_jax_function():
    """A graph drawing from a shared generator (as a step drawing its dropout masks would): the same
    draws as PyTensor's own JAX function, update after update; here on one device."""
    import warnings

    import jax
    import pytensor
    import pytensor.tensor as pt

    x = pt.tensor("x", dtype="float32", shape=(3, 4))
    rng = pytensor.shared(np.random.default_rng(0))
    next_rng, u = pt.random.uniform(size=(3, 4), rng=rng, return_next_rng=True)
    sharded = devices.DeviceFunction([x], [(x * u).sum()], {rng: next_rng}, jax.devices()[:1], {x: 1})
    with warnings.catch_warnings():  # PyTensor's says it compiles a copy of the generator
        warnings.filterwarnings("ignore", message="The RandomType SharedVariables")
        plain = pytensor.function([x], (x * u).sum(), updates={rng: next_rng}, mode="JAX")
    ones = np.ones((3, 4), np.float32)
    draws = [float(sharded(ones)[0]) for _ in range(3)]
    assert draws == pytest.approx([float(plain(ones)) for _ in range(3)], abs=1e-6) and len(set(draws)) == 3
