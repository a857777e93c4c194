import json

import numpy as np
import pytest

from charrnn import checkpoint
from charrnn.corpus import Vocab, as_column
from charrnn.model import ModelConfig, shared_params
from charrnn.train import Trainer, TrainConfig, compile_train_step
from reference import finite_difference_grads, loss, random_params

PATTERN = "hello world! "


def test_one_sgd_step_equals_the_manual_update():
    params = random_params(4, 5, seed=1)
    shared = shared_params({name: w.copy() for name, w in params.items()})
    step = compile_train_step(shared, seq_len=3)
    xs, ys, lr = [2, 0, 3], [0, 3, 1], 0.05
    got_loss = step(as_column(xs), as_column(ys), np.asarray(lr))
    assert got_loss == pytest.approx(loss(params, xs, ys), rel=1e-10)  # loss before the update
    grads = finite_difference_grads(params, xs, ys)
    for name, w in params.items():
        np.testing.assert_allclose(shared[name].get_value(), w - lr * grads[name], rtol=1e-7, atol=1e-9)
        assert not np.allclose(shared[name].get_value(), w)


def train_pattern(out_dir, steps=1500):
    text = PATTERN * 1000
    vocab = Vocab.from_text(text)
    cfg = TrainConfig(seq_len=8, lr=0.01, max_steps=steps, log_every=50, checkpoint_every=1000, sample_length=26)
    trainer = Trainer(vocab, ModelConfig(vocab_size=len(vocab), hidden=64), cfg, out_dir, log=lambda m: None,
                      progress=True)
    trainer.compile()
    return trainer, trainer.run(vocab.encode(text))


def test_training_lowers_the_loss_and_learns_the_pattern(tmp_path):
    trainer, path = train_pattern(tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(50, 1501, 50))
    first, last = records[0]["loss"], records[-1]["loss"]
    assert first > 1.2 and last < 0.1 * first, (first, last)  # ln 9 = 2.2 at the start
    assert trainer.step == 1500 and records[-1]["epoch"] == pytest.approx(1500 / (len(PATTERN) * 1000 // 8), abs=1e-3)
    params, meta = checkpoint.load(path)
    assert meta["step"] == 1500 and meta["loss"] == pytest.approx(last, abs=1e-6)
    assert meta["vocab"] == "".join(sorted(set(PATTERN))) and meta["model"]["hidden"] == 64
    samples = (tmp_path / "samples.txt").read_text()
    assert samples.count("--- step") == 2  # at step 1000 and at the end


def test_max_steps_and_epochs_bound_the_run(tmp_path):
    text = PATTERN * 10  # 130 characters: 16 sequences of 8
    vocab = Vocab.from_text(text)
    cfg = TrainConfig(epochs=2, log_every=5, checkpoint_every=100, sample_length=5)
    trainer = Trainer(vocab, ModelConfig(len(vocab), hidden=8), cfg, tmp_path, log=lambda m: None, progress=True)
    trainer.compile()
    trainer.run(vocab.encode(text))
    assert trainer.step == 32
    assert checkpoint.load(tmp_path / "latest.npz")[1]["epoch"] == 2
