import json
import os
from dataclasses import asdict

import numpy as np
import pytest

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
