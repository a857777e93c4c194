import collections
import functools
import io
import json
import math
import os
import zipfile
from dataclasses import asdict

import numpy as np
import pytest
from conftest import write_bomb
from hypothesis import given, settings, strategies as st
from numpy.lib import format as npformat

from charrnn import checkpoint, configs
from charrnn.model import ModelConfig, init_params, shared_params
from charrnn.sample import Sampler

CONFIG = ModelConfig(vocab_size=4, hidden=6, cell="lstm", layers=2)
META = {"vocab": "abcd", "model": asdict(CONFIG), "train": {"seq_len": 3, "carry_state": True}, "step": 7}


@pytest.fixture
def params():
    return init_params(CONFIG, seed=3)


def test_round_trip_without_pickle(tmp_path, params):
    path = tmp_path / "latest.npz"
    checkpoint.save(path, params, META)
    loaded, meta = checkpoint.load(path)
    for name, value in params.items():
        np.testing.assert_array_equal(loaded[name], value)
        assert loaded[name].dtype == value.dtype
    assert meta == {"format": checkpoint.FORMAT, "version": checkpoint.VERSION, **META}
    with np.load(path, allow_pickle=False) as z:  # another program can read it with numpy + json alone
        assert json.loads(z["meta"].tobytes())["vocab"] == "abcd"
    assert [p.name for p in tmp_path.iterdir()] == ["latest.npz"]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # an ordinary file, not mkstemp's private one


def test_loaded_model_predicts_identically(tmp_path, params):
    path = tmp_path / "latest.npz"
    checkpoint.save(path, params, META)
    loaded, _ = checkpoint.load(path)
    seed = np.array([0, 2, 1, 3], dtype=np.uint8)
    before = Sampler(shared_params(params), CONFIG).generate(seed, 30, temperature=1.0, rng_seed=5)
    after = Sampler(shared_params(loaded), configs.model_config(META)).generate(seed, 30, temperature=1.0, rng_seed=5)
    np.testing.assert_array_equal(before, after)


def test_a_version_1_checkpoint_still_loads(tmp_path):
    """The foundation's format: the lesson network's six arrays and a model of vocab_size and hidden."""
    params = init_params(ModelConfig(vocab_size=4, hidden=6, cell="rnn", layers=1), seed=1)
    v1 = {"format": checkpoint.FORMAT, "version": 1, "vocab": "abcd", "model": {"vocab_size": 4, "hidden": 6},
          "train": {"seq_len": 8}, "step": 3}
    blob = np.frombuffer(json.dumps(v1).encode(), dtype=np.uint8)
    np.savez(tmp_path / "v1.npz", meta=blob, **params)
    loaded, meta = checkpoint.load(tmp_path / "v1.npz")
    assert configs.model_config(meta) == ModelConfig(vocab_size=4, hidden=6, cell="rnn", layers=1, dropout=0.0)
    assert list(loaded) == ["W_x", "b_x", "W_h", "b_h", "W_y", "b_y"]


@pytest.mark.parametrize("name,message", [
    ("missing.npz", "no checkpoint at"),
    ("text.npz", "not a readable charrnn checkpoint"),
    ("other.npz", "no readable metadata"),
    ("objects.npz", "not a readable charrnn checkpoint"),
    ("newer.npz", "upgrade charrnn"),
    ("short.npz", "damaged: W_h"),
    ("nolayer.npz", "damaged: missing W_h.1"),
])
def test_refuses_what_is_not_a_checkpoint(tmp_path, params, name, message):
    (tmp_path / "text.npz").write_text("hello")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    np.savez(tmp_path / "objects.npz", meta=np.array([{"a": 1}], dtype=object))
    checkpoint.save(tmp_path / "newer.npz", params, {**META, "version": checkpoint.VERSION + 1})
    checkpoint.save(tmp_path / "short.npz", {**params, "W_h": np.zeros((2, 2), np.float32)}, META)
    checkpoint.save(tmp_path / "nolayer.npz", {k: v for k, v in params.items() if k != "W_h.1"}, META)
    with pytest.raises(checkpoint.CheckpointError, match=message):
        checkpoint.load(tmp_path / name)


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, params):
    path = tmp_path / "latest.npz"
    checkpoint.save(path, params, META)
    before = path.read_bytes()
    broken = {**params, "W_y": object()}  # an object array would need pickle
    with pytest.raises(ValueError):
        checkpoint.save(path, broken, META)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["latest.npz"]


def copy_without(src, dst, name):
    """`src` rewritten to `dst` without member `name`, and opened for appending (deflated)."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for info in old.infolist():
            if info.filename != name:
                new.writestr(info, old.read(info))
    return zipfile.ZipFile(dst, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1)


@pytest.fixture
def member_reads(monkeypatch):
    """Bytes read from each zip member, by member name, while the test runs."""
    reads = collections.Counter()
    read = zipfile.ZipExtFile.read

    def counted(self, n=-1):
        data = read(self, n)
        reads[self.name] += len(data)
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", counted)
    return reads


def test_a_deflate_bomb_beside_the_model_is_never_read(tmp_path, params, member_reads):
    path = tmp_path / "bomb.npz"
    checkpoint.save(path, params, {**META, "train": {**META["train"], "optimizer": "sgd"}})  # sgd: no state
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        write_bomb(zf, "extra.npy")
    assert path.stat().st_size < (8 << 20)
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo("extra.npy").file_size > (1 << 30)
    member_reads.clear()
    loaded, meta = checkpoint.load(path)
    assert meta["step"] == 7 and all(np.array_equal(loaded[k], v) for k, v in params.items())
    loaded, meta, extras = checkpoint.load(path, extras=True)  # nor for --resume
    assert extras == {}
    assert "extra.npy" not in member_reads and member_reads["W_y.npy"] > 0


def test_a_deflate_bomb_in_place_of_a_weight_is_refused_unopened(tmp_path, params, member_reads):
    checkpoint.save(tmp_path / "good.npz", params, META)
    with copy_without(tmp_path / "good.npz", tmp_path / "bomb.npz", "W_y.npy") as zf:
        write_bomb(zf, "W_y.npy")  # a GiB where the metadata's (6, 4) floats should be
    member_reads.clear()
    with pytest.raises(checkpoint.CheckpointError, match="damaged: W_y inflates to 1,073,741,952 bytes, more than "
                                                         "it can hold"):
        checkpoint.load(tmp_path / "bomb.npz")
    assert "W_y.npy" not in member_reads
    # A bomb the metadata agrees with: a model of 600 units whose W_h (1.4 MB of zeros) deflates 1000-fold
    big = ModelConfig(vocab_size=4, hidden=600, cell="rnn", layers=1)
    checkpoint.save(tmp_path / "big.npz", init_params(big), {**META, "model": asdict(big)})
    with copy_without(tmp_path / "big.npz", tmp_path / "bomb.npz", "W_h.npy") as zf:
        write_bomb(zf, "W_h.npy", shape=(600, 600))
    member_reads.clear()
    with pytest.raises(checkpoint.CheckpointError, match=r"damaged: W_h claims to inflate \d{1,2},\d{3} bytes to "
                                                         "1,440,128, more than weights compress"):
        checkpoint.load(tmp_path / "bomb.npz")
    assert "W_h.npy" not in member_reads


def test_a_checkpoint_tampered_below_the_metadata_is_refused(tmp_path, params):
    checkpoint.save(tmp_path / "good.npz", params, META)
    with copy_without(tmp_path / "good.npz", tmp_path / "objects.npz", "W_y.npy") as zf:
        zf.writestr("W_y.npy", b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (6, 4), }".ljust(127) + b"\n")
    with copy_without(tmp_path / "good.npz", tmp_path / "ints.npz", "b_y.npy") as zf:
        np.lib.format.write_array(buffer := io.BytesIO(), np.zeros(4, np.int32))
        zf.writestr("b_y.npy", buffer.getvalue())
    with copy_without(tmp_path / "good.npz", tmp_path / "short.npz", "b_y.npy") as zf:
        np.lib.format.write_array(buffer := io.BytesIO(), np.zeros(4, np.float32))
        zf.writestr("b_y.npy", buffer.getvalue()[:-4])  # the header claims 4 floats, 3 follow
    expected = {"objects.npz": "W_y holds Python objects", "ints.npz": r"damaged: b_y is int32\(4,\)",
                "short.npz": "damaged: b_y holds 140 bytes, its header says 144"}
    for name, message in expected.items():
        with pytest.raises(checkpoint.CheckpointError, match=message):
            checkpoint.load(tmp_path / name)


def test_weights_that_are_not_finite_are_refused_naming_arrays_and_counts(tmp_path, params):
    bad = {**params, "W_y": np.full_like(params["W_y"], np.nan),
           "b_y": np.array([np.inf, 1, -np.inf, np.inf], np.float32)}
    checkpoint.save(tmp_path / "nan.npz", bad, META)
    with pytest.raises(checkpoint.NonFiniteWeights) as e:
        checkpoint.load(tmp_path / "nan.npz")
    assert isinstance(e.value, checkpoint.CheckpointError) and "\n" not in str(e.value)
    assert "(W_y: 24 NaN; b_y: 2 inf, 1 -inf)" in str(e.value)
    assert e.value.counts == {"W_y": {"NaN": 24}, "b_y": {"inf": 2, "-inf": 1}}
    assert e.value.meta["step"] == 7 and np.isnan(e.value.params["W_y"]).all()  # what info describes
    assert checkpoint.describe_nonfinite({"W_y": {"NaN": 21632}}) == "W_y: 21,632 NaN"


RESUMABLE_META = {**META, "train": {**META["train"], "batch_size": 2, "optimizer": "adam"}, "resume": {"epoch": 0}}


@functools.cache
def resumable():
    """The bytes of a checkpoint with optimizer state and carried state, and what it holds (not a
    fixture: Hypothesis would print all of it with a failing example)."""
    params = init_params(CONFIG, seed=4)
    extras = {**{f"{slot}.{k}": np.full_like(v, 0.5) for slot in ("opt.m", "opt.v") for k, v in params.items()},
              "opt.t": np.array(3.0), "state": np.ones((4, 2, 6), np.float32)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:  # as save writes it, in memory
        for name, a in {"meta": np.frombuffer(json.dumps({"format": checkpoint.FORMAT, "version": checkpoint.VERSION,
                                                         **RESUMABLE_META}).encode(), np.uint8), **params, **extras}.items():
            with zf.open(f"{name}.npy", "w") as f:
                npformat.write_array(f, np.asarray(a), allow_pickle=False)
    return buffer.getvalue(), params, extras


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("corrupt") / "c.npz"


def test_the_resumable_checkpoint_loads_whole(scratch):
    blob, params, extras = resumable()
    scratch.write_bytes(blob)
    got, meta, got_extras = checkpoint.load(scratch, extras=True)
    assert meta["train"]["batch_size"] == 2 and sorted(got_extras) == sorted(extras)
    assert all(np.array_equal(got[k], v) for k, v in params.items())
    damaged = blob.replace(b"state.npy", b"stbte.npy")  # the carried state under another name
    scratch.write_bytes(damaged)
    with pytest.raises(checkpoint.CheckpointError, match="damaged: missing state"):
        checkpoint.load(scratch, extras=True)
    assert checkpoint.load(scratch)[1]["step"] == 7  # predicting needs no state


def assert_loads_unchanged_or_refused(path, params, extras):
    try:
        got, meta, got_extras = checkpoint.load(path, extras=True)
    except checkpoint.CheckpointError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return
    assert meta["step"] == 7 and sorted(got) == sorted(params) and sorted(got_extras) == sorted(extras)
    assert all(np.array_equal(got[k], v) for k, v in params.items())
    assert all(np.array_equal(got_extras[k], v) for k, v in extras.items())


@settings(max_examples=300)
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=4))
def test_a_checkpoint_with_flipped_bytes_loads_unchanged_or_raises_checkpoint_error(scratch, flips):
    blob, params, extras = resumable()
    damaged = bytearray(blob)
    for where, mask in flips:
        damaged[int(where * len(blob))] ^= mask
    scratch.write_bytes(damaged)
    assert_loads_unchanged_or_refused(scratch, params, extras)


@given(cut=st.floats(0, 1, exclude_max=True))
def test_a_truncated_checkpoint_raises_checkpoint_error(scratch, cut):
    blob, params, extras = resumable()
    scratch.write_bytes(blob[: int(cut * len(blob))])
    with pytest.raises(checkpoint.CheckpointError, match="not a readable charrnn checkpoint"):
        checkpoint.load(scratch, extras=True)
