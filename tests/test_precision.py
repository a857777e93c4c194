"""Mixed precision: BF16Dot multiplies bfloat16-rounded inputs in float32 under JAX and computes the
exact float32 product on every other backend, its gradient is two more such products, and a
bfloat16 training step equals float32's within bfloat16's rounding."""
import json
import re
from collections import Counter

import ml_dtypes
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from click.testing import CliRunner
from pytensor.scan.op import Scan

from charrnn import backend, checkpoint, devices, model, optim, precision, schedule
from charrnn.backend import compile_function
from charrnn.cli import cli
from charrnn.configs import build_configs, train_config
from charrnn.train import compile_train_step
from conftest import PATTERN
from reference import compile_py

M, K, N = 6, 40, 5  # K long enough that the accumulation's precision shows
RNG = np.random.default_rng(0)
A, B, W = (RNG.normal(size=shape).astype(np.float32) for shape in ((M, K), (K, N), (M, N)))


def bf16(x):
    """x rounded to bfloat16 (to nearest, ties to even), as float32."""
    return np.asarray(x).astype(ml_dtypes.bfloat16).astype(np.float32)


def product_and_gradients():
    """(a, b) -> (a·b in bfloat16, d/da and d/db of sum(W ⊙ a·b)) as a graph."""
    a, b = pt.tensor("a", dtype="float32", shape=(M, K)), pt.tensor("b", dtype="float32", shape=(K, N))
    y = precision.dot(a, b, "bfloat16")
    return [a, b], [y, *pytensor.grad((y * W).sum(), [a, b])]


def applied_ops(fgraph):
    """The Ops of a compiled graph, those inside its scans included."""
    for node in fgraph.apply_nodes:
        yield type(node.op).__name__
        if isinstance(node.op, Scan):
            yield from applied_ops(node.op.fgraph)


@pytest.mark.parametrize("backend_name", ["python", "c", "numba"])
def test_other_backends_compute_the_exact_float32_product_and_its_gradient(backend_name):
    inputs, outputs = product_and_gradients()
    fn = compile_py(inputs, outputs) if backend_name == "python" else compile_function(inputs, outputs,
                                                                                       backend=backend_name)
    y, da, db = fn(A, B)
    assert y.dtype == da.dtype == db.dtype == np.float32
    for got, want in ((y, A @ B), (da, W @ B.T), (db, A.T @ W)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)  # BLAS's float32 sums, in its order


def test_jax_rounds_the_inputs_to_bfloat16_and_accumulates_in_float32():
    inputs, outputs = product_and_gradients()
    y, da, db = compile_function(inputs, outputs, backend="jax")(A, B)
    assert y.dtype == da.dtype == db.dtype == np.float32
    A16, B16, W16 = (bf16(x).astype(np.float64) for x in (A, B, W))
    # the gradients are bfloat16 products too, of the incoming gradient and the other operand
    for got, want, exact in ((y, A16 @ B16, A @ B), (da, W16 @ B16.T, W @ B.T), (db, A16.T @ W16, A.T @ W)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)  # float32 sums of bfloat16 products
        assert np.abs(got - exact).max() > 1e-3  # and not the float32 product: the inputs were rounded


def test_a_sequence_is_multiplied_row_by_row_keeping_its_static_shape():
    a = pt.tensor("a", dtype="float32", shape=(3, 2, K))
    y = precision.dot(a, B, "bfloat16")
    assert y.type.shape == (3, 2, N)
    x = RNG.normal(size=(3, 2, K)).astype(np.float32)
    np.testing.assert_allclose(compile_py([a], y)(x), x @ B, rtol=1e-6, atol=1e-6)


def test_a_product_over_rows_and_its_gradient():
    """dot_t(a, w) = aᵀ·w summed over a (2, 3) sequence's rows (a weight gradient's product), and its own
    gradient: exact in float32 with PyTensor's Python implementations, from bfloat16-rounded inputs with JAX."""
    a, w = pt.tensor("a", dtype="float32", shape=(2, 3, K)), pt.tensor("w", dtype="float32", shape=(2, 3, N))
    y = precision.dot_t(a, w, "bfloat16")
    assert y.type.shape == (K, N) and precision.dot_t(a, w).owner.op == pt.dot(A.T, W).owner.op
    outputs = [y, *pytensor.grad((y * B).sum(), [a, w])]  # d/da = w·Bᵀ, d/dw = a·B
    seq_a, seq_w = A.reshape(2, 3, K), W.reshape(2, 3, N)
    for got, want in zip(compile_py([a, w], outputs)(seq_a, seq_w), (A.T @ W, W @ B.T, A @ B)):
        np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-5, atol=1e-5)
    A16, W16, B16 = (bf16(x).astype(np.float64) for x in (A, W, B))
    got_jax = compile_function([a, w], outputs, backend="jax")(seq_a, seq_w)
    for got, want in zip(got_jax, (A16.T @ W16, W16 @ B16.T, A16 @ B16)):
        np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-5, atol=1e-5)


def dot_operand_types(hlo):
    """The operand types of every dot in XLA's optimized HLO text: [("bf16", "bf16"), ...]."""
    types = dict(re.findall(r"%([\w.-]+) = (\w+)\[", hlo))
    return [tuple(types[name] for name in operands)
            for operands in (re.findall(r"%([\w.-]+)", call) for call in re.findall(r" dot\(([^)]*)\)", hlo))]


def test_xla_multiplies_a_weight_gradient_in_bfloat16():
    """A weight gradient of a (64, 64) sequence, summed over both axes, reaches XLA's bfloat16 product
    wherever a plain bfloat16 product does (XLA would compute the transposed matrix product in float32)."""
    import jax
    import jax.numpy as jnp
    from pytensor.link.jax.dispatch import jax_funcify

    precision.register("jax")
    a, w = np.ones((64, 64, 256), np.float32), np.ones((64, 64, 768), np.float32)

    def compiled(fn, *args):
        return jax.jit(fn).lower(*args).compile().as_text()

    plain = compiled(lambda x, y: jnp.dot(x.astype(jnp.bfloat16), y.astype(jnp.bfloat16),
                                          preferred_element_type=jnp.float32), np.ones((256, 4096), np.float32),
                     w.reshape(4096, 768))
    if dot_operand_types(plain) != [("bf16", "bf16")]:
        pytest.skip(f"XLA multiplies no bfloat16 natively on {jax.devices()[0].device_kind}")
    assert dot_operand_types(compiled(jax_funcify(precision.bf16_dot_t), a, w)) == [("bf16", "bf16")]


def test_float32_is_plain_dot_and_other_precisions_are_refused():
    a = pt.matrix("a", dtype="float32")
    assert precision.dot(a, a, "float32").owner.op == pt.dot(a, a).owner.op
    for other in ("float16", "auto"):  # auto is resolved before a graph is built
        with pytest.raises(ValueError, match="float32 or bfloat16"):
            precision.dot(a, a, other)
    with pytest.raises(TypeError, match="float32 matrices"):
        precision.bf16_dot(pt.matrix(dtype="float64"), a)


def test_auto_is_bfloat16_with_jax_where_the_hardware_multiplies_it_and_float32_elsewhere():
    native = precision.native_bfloat16()
    assert precision.resolve("auto", "jax") == ("bfloat16" if native else "float32")
    for other in ("c", "numba"):  # they compute a bfloat16 product in float32: nothing to gain
        assert precision.resolve("auto", other) == "float32"
    for given in ("float32", "bfloat16"):
        assert {precision.resolve(given, b) for b in ("jax", "c")} == {given}


def test_which_hardware_multiplies_bfloat16_natively(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t: fpu\n")
    assert precision.cpu_flags(cpuinfo) == {"fpu", "sse2", "avx512f", "avx512_bf16"}  # the first CPU's
    assert precision.cpu_flags(tmp_path / "none") == set()

    def device(platform, **attributes):  # what multiplies_bfloat16 reads of a jax.Device
        return type("Device", (), {"platform": platform, **attributes})()

    cases = [(device("cpu"), {"avx512f", "avx512_bf16"}, True), (device("cpu"), {"amx_bf16"}, True),
             (device("cpu"), {"avx512f", "avx2"}, False), (device("tpu"), set(), True),
             (device("gpu", compute_capability="9.0"), set(), True),
             (device("gpu", compute_capability="8.0"), set(), True),
             (device("gpu", compute_capability="7.5"), {"avx512_bf16"}, False),  # the GPU's, not the host's
             (device("gpu"), set(), False),  # a GPU that says nothing (ROCm's): unknown
             (device("gpu", compute_capability="gfx90a"), set(), False), (device("metal"), {"amx_bf16"}, False)]
    for dev, flags, expected in cases:
        assert precision.multiplies_bfloat16(dev, flags) is expected, (vars(type(dev)), flags)
    import jax

    first = jax.devices()[0]
    if first.platform == "cpu":  # this machine, as native_bfloat16 sees it
        assert precision.native_bfloat16() is bool(precision.cpu_flags() & precision.BFLOAT16_CPU_FLAGS)


T, BATCH, V, H = 5, 3, 7, 8


def one_update(prec, backend_name):
    """(loss, {name: parameter after one SGD update}, compiled step) of a 2-layer GRU with dropout
    on a fixed batch, from the same initial weights."""
    model_cfg, train_cfg = build_configs(V, cell="gru", hidden=H, layers=2, dropout=0.2, seq_len=T, batch_size=BATCH,
                                         optimizer="sgd", precision=prec, backend=backend_name)
    params = model.shared_params(model.init_params(model_cfg, seed=1))
    step = compile_train_step(params, optim.optimizer_state("sgd", params), model_cfg, train_cfg)
    rng = np.random.default_rng(2)
    x, y = (rng.integers(0, V, (T, BATCH)).astype(np.int32) for _ in "xy")
    states = rng.normal(0, 0.5, (model_cfg.state_size, BATCH, H)).astype(np.float32)
    update = np.uint32(0)  # the dropout masks' key, with rng_seed
    loss, _ = step(x, y, np.ones((T, BATCH), np.float32), states, update, np.float32(0.5))
    devices.to_host(step)  # the weights, from the device the step keeps them on (with jax)
    return float(loss), {name: p.get_value() for name, p in params.items()}, step


@pytest.fixture(scope="module")
def updates():
    """One update in float32 and in bfloat16 with JAX, and in bfloat16 with PyTensor's Python
    implementations (FAST_COMPILE: BF16Dot's perform), each compiled once for the module."""
    initial = model.init_params(build_configs(V, cell="gru", hidden=H, layers=2)[0], seed=1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(backend.BACKENDS, "python", "FAST_COMPILE")
        return initial, {key: one_update(*key) for key in [("float32", "jax"), ("bfloat16", "jax"),
                                                             ("bfloat16", "python")]}


def test_every_product_of_a_bfloat16_step_is_bf16dot_but_the_one_hot_gradient(updates):
    _, runs = updates
    ops = Counter(applied_ops(runs["bfloat16", "jax"][2].fgraph))
    # forward: 2 recurrent, layer 1's input term, the output layer; its gradient: 2; backward: 2 in
    # the scans, 2 recurrent and layer 1's input weights, layer 0's outputs. The one-hot dW_x of layer 0 stays.
    assert (ops["BF16Dot"], ops["Dot"]) == (12, 1), ops
    assert "BF16Dot" not in Counter(applied_ops(runs["float32", "jax"][2].fgraph))


def test_a_bfloat16_step_is_float32s_within_bfloat16_rounding(updates):
    initial, runs = updates
    loss32, after32, _ = runs["float32", "jax"]
    loss16, after16, _ = runs["bfloat16", "jax"]
    assert loss16 == pytest.approx(loss32, rel=1e-2) and loss16 != loss32
    for name, w in initial.items():
        step32, step16 = after32[name] - w, after16[name] - w
        assert np.abs(step32).max() > 0, name
        assert np.abs(step16 - step32).max() <= 2e-2 * np.abs(step32).max(), name  # 0.5% measured
        assert after16[name].dtype == np.float32


def test_the_same_bfloat16_step_runs_on_another_backend_in_exact_float32(updates):
    _, runs = updates
    loss32, after32, _ = runs["float32", "jax"]
    loss, after, _ = runs["bfloat16", "python"]
    assert loss == pytest.approx(loss32, rel=1e-6)
    for name, w in after32.items():
        np.testing.assert_allclose(after[name], w, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory):
    """A `charrnn train --precision bfloat16` run of a few updates, and its corpus."""
    out = tmp_path_factory.mktemp("bf16")
    corpus = out / "corpus.txt"
    corpus.write_text(PATTERN * 200, encoding="utf-8")
    result = CliRunner().invoke(cli, ["train", str(corpus), "--precision", "bfloat16", "--cell", "lstm",
                                      "--hidden", "16", "--layers", "1", "--seq-len", "8", "--batch-size", "4",
                                      "--max-steps", "3", "--val-frac", "0", "--checkpoint-every", "3",
                                      "--sample-length", "5", "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    return out, result


def test_train_with_bfloat16_writes_an_ordinary_float32_checkpoint(bf16_run):
    out, result = bf16_run
    assert "in bfloat16, accumulated in float32" in result.stderr and "done: 3 updates" in result.stderr
    params, meta = checkpoint.load(out / "latest.npz")
    assert meta["train"]["precision"] == "bfloat16" and meta["step"] == 3
    assert all(a.dtype == np.float32 for a in params.values())
    info = CliRunner().invoke(cli, ["info", str(out / "latest.npz")])
    assert info.exit_code == 0 and "bfloat16 products" in info.stdout


def test_train_resolves_auto_where_it_runs_and_records_auto(tmp_path):
    """No --precision: bfloat16 products where this machine multiplies them natively, float32
    elsewhere, said in the compile line; the checkpoint keeps auto, so a resume elsewhere resolves again.
    No --lr either: the rate for a budget of one update (the short budgets'), said and kept in the checkpoint."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(PATTERN * 50, encoding="utf-8")
    result = CliRunner().invoke(cli, ["train", str(corpus), "--hidden", "8", "--layers", "1", "--seq-len", "8",
                                      "--batch-size", "2", "--max-steps", "1", "--val-frac", "0", "--sample-length",
                                      "0", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.stderr
    compiling = next(line for line in result.stderr.splitlines() if line.startswith("compiling the training step"))
    assert ("in bfloat16, accumulated in float32" in compiling) is precision.native_bfloat16(), compiling
    meta = checkpoint.load(tmp_path / "run" / "latest.npz")[1]
    assert meta["train"]["precision"] == "auto" and meta["train"]["lr"] == "auto"
    epochs = meta["epoch"]  # of a budget of one update, the one done: under 10, so 3e-3
    assert meta["resume"]["peak_lr"] == 3e-3 == schedule.auto_lr(train_config(meta), epochs)
    assert f"learning rate 0.003 (--lr auto, for a budget of {epochs:.3g} epochs)" in result.stderr
    info = CliRunner().invoke(cli, ["info", str(tmp_path / "run" / "latest.npz")])
    assert info.exit_code == 0 and "auto precision" in info.stdout and "lr auto (0.003 for the budget)" in info.stdout


def test_predict_and_eval_read_a_bfloat16_run_in_float32_or_bfloat16(bf16_run):
    out, _ = bf16_run
    ckpt = str(out / "latest.npz")
    result = CliRunner().invoke(cli, ["predict", "--seed", "hello", "--checkpoint", ckpt, "--length", "10"])
    assert result.exit_code == 0 and len(result.stdout) == 10, result.stderr
    nats = {}
    for prec in ("float32", "bfloat16"):
        result = CliRunner().invoke(cli, ["eval", str(out / "corpus.txt"), "--checkpoint", ckpt, "--json",
                                          "--precision", prec])
        assert result.exit_code == 0, result.stderr
        nats[prec] = json.loads(result.stdout)["model"]["nats_per_char"]
    assert nats["bfloat16"] == pytest.approx(nats["float32"], rel=1e-2)


@pytest.mark.parametrize("command", [["train", "x.txt"], ["eval", "x.txt"]])
def test_an_unknown_precision_is_a_usage_error(tmp_path, command):
    (tmp_path / "x.txt").write_text(PATTERN)
    result = CliRunner().invoke(cli, [command[0], str(tmp_path / command[1]), "--precision", "float16"])
    assert result.exit_code == 2 and "'--precision'" in result.stderr and "float16" in result.stderr
    assert "Traceback" not in result.stderr
