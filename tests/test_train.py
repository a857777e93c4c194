import json
from dataclasses import replace

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest

from charrnn import checkpoint, model, optim
from charrnn.backend import compile_function
from charrnn.corpus import BatchStream, Vocab, split
from charrnn.configs import build_configs
from charrnn.evaluate import compile_eval_step
from charrnn.train import Trainer, compile_train_step, zero_states
from conftest import PATTERN
from reference import as_column, finite_difference_grads, loss, random_params


def test_one_sgd_step_equals_the_manual_update():
    model_cfg, train_cfg = build_configs(4, "lesson6", hidden=5, seq_len=3, backend="c")  # float64
    params = random_params(4, 5, seed=1)
    shared = model.shared_params({name: w.copy() for name, w in params.items()})
    step = compile_train_step(shared, {}, model_cfg, train_cfg)
    xs, ys, lr = [2, 0, 3], [0, 3, 1], 0.05
    mean, _ = step(as_column(xs), as_column(ys), np.ones((3, 1)), np.zeros((1, 1, 5)), np.asarray(lr))
    assert mean * 3 == pytest.approx(loss(params, xs, ys), rel=1e-10)  # loss before the update
    grads = finite_difference_grads(params, xs, ys)
    for name, w in params.items():
        np.testing.assert_allclose(shared[name].get_value(), w - lr * grads[name], rtol=1e-7, atol=1e-9)
        assert not np.allclose(shared[name].get_value(), w)


def foundation_updates(params, ids, seq_len, lr):
    """The foundation issue's lesson-6 loop, built directly from its equations: each chunk of
    seq_len characters from a zero state, summed loss, one plain SGD update; returns the losses."""
    shared = model.shared_params({name: w.copy() for name, w in params.items()})
    x, y = (pt.tensor(name, dtype="int32", shape=(seq_len, 1)) for name in "xy")
    h0 = pt.zeros((1, params["W_h"].shape[0]), dtype="float32")
    def rnn_step(xw_t, h_tm1, W_h, b_h):  # the lesson's h = relu(x·W_x + b_x + h·W_h + b_h)
        return pt.maximum(xw_t + pt.dot(h_tm1, W_h) + b_h, 0)

    hs = pytensor.scan(rnn_step, sequences=[shared["W_x"][x] + shared["b_x"]],
                       outputs_info=[h0], non_sequences=[shared["W_h"], shared["b_h"]], return_updates=False)
    total = model.sequence_loss(model.output_logits(hs, shared), y)
    grads = dict(zip(shared, pytensor.grad(total, list(shared.values()))))
    step = compile_function([x, y], total, updates=optim.updates("sgd", shared, grads, {}, np.float32(lr)))
    losses = [float(step(as_column(ids[i : i + seq_len]), as_column(ids[i + 1 : i + seq_len + 1])))
              for i in range(0, len(ids) - seq_len, seq_len)]
    return losses, {name: p.get_value() for name, p in shared.items()}


def test_lesson6_preset_reproduces_the_foundation_updates(tmp_path):
    text = (PATTERN * 40)[: 8 * 60 + 1]  # 60 whole sequences of 8
    vocab = Vocab.from_text(text)
    model_cfg, train_cfg = build_configs(len(vocab), "lesson6", hidden=16, log_every=1)
    assert (train_cfg.batch_size, train_cfg.carry_state, train_cfg.optimizer, train_cfg.loss) == (1, False, "sgd", "sum")
    trainer = Trainer(vocab, model_cfg, train_cfg, tmp_path, log=lambda m: None, show_progress=False)
    initial = {name: p.get_value().copy() for name, p in trainer.params.items()}
    trainer.compile()
    trainer.run(*split(vocab.encode(text), train_cfg.val_frac))
    want_losses, want_params = foundation_updates(initial, vocab.encode(text), 8, 0.01)
    got_losses = [json.loads(line)["loss"] * 8 for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(got_losses) == len(want_losses) == 60
    np.testing.assert_allclose(got_losses, want_losses, rtol=1e-5)  # metrics round to 6 decimals
    got_params, _ = checkpoint.load(tmp_path / "latest.npz")
    for name, want in want_params.items():
        np.testing.assert_allclose(got_params[name], want, rtol=1e-6, atol=1e-7, err_msg=name)


def train_pattern(out_dir, steps=1500):
    text = PATTERN * 1000
    vocab = Vocab.from_text(text)
    model_cfg, cfg = build_configs(len(vocab), "lesson6", hidden=64, max_steps=steps, log_every=50,
                                   checkpoint_every=1000, sample_length=26)
    trainer = Trainer(vocab, model_cfg, cfg, out_dir, log=lambda m: None, show_progress=False)
    trainer.compile()
    return trainer, trainer.run(vocab.encode(text))


def test_training_lowers_the_loss_and_learns_the_pattern(tmp_path):
    trainer, path = train_pattern(tmp_path)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(50, 1501, 50))
    first, last = records[0]["loss"], records[-1]["loss"]
    assert first > 1.2 and last < 0.1 * first, (first, last)  # ln 9 = 2.2 at the start
    assert trainer.state.step == 1500 and records[-1]["epoch"] == pytest.approx(1500 / (len(PATTERN) * 1000 // 8), abs=1e-3)
    params, meta = checkpoint.load(path)
    assert meta["step"] == 1500 and meta["loss"] == pytest.approx(last, abs=1e-6)
    assert meta["vocab"] == "".join(sorted(set(PATTERN))) and meta["model"]["hidden"] == 64
    samples = (tmp_path / "samples.txt").read_text()
    assert samples.count("--- step") == 2  # at step 1000 and at the end


def test_gated_network_learns_and_keeps_the_best_checkpoint(tmp_path):
    text = PATTERN * 400
    vocab = Vocab.from_text(text)
    model_cfg, cfg = build_configs(len(vocab), cell="gru", layers=2, hidden=32, batch_size=8, seq_len=16,
                                   max_steps=150, eval_every=25, log_every=25, checkpoint_every=1000, sample_length=10,
                                   lr_schedule="char-rnn")  # cosine's 100 updates of warm-up are most of 150
    trainer = Trainer(vocab, model_cfg, cfg, tmp_path, log=lambda m: None, show_progress=False)
    trainer.compile()
    trainer.run(*split(vocab.encode(text), cfg.val_frac))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    vals = [r["val_loss"] for r in records if "val_loss" in r]
    assert len(vals) >= 6 and vals[-1] < 0.3 * vals[0], vals
    assert all(r["val_bpc"] == pytest.approx(r["val_loss"] / np.log(2), abs=1e-5) for r in records if "val_loss" in r)
    _, best = checkpoint.load(tmp_path / "best.npz")
    assert best["best_val_loss"] == pytest.approx(min(vals), abs=1e-6)
    _, latest = checkpoint.load(tmp_path / "latest.npz")
    assert latest["step"] == 150 and latest["model"]["cell"] == "gru"


def test_lr_schedule_decays_after_the_given_epoch(tmp_path):
    vocab = Vocab("ab")
    _, cfg = build_configs(2, lr=1.0, lr_decay=0.5, lr_decay_after=2, lr_schedule="char-rnn")
    trainer = Trainer(vocab, model.ModelConfig(2, hidden=2), cfg, tmp_path, log=lambda m: None)
    lrs = []
    for epoch in range(5):
        trainer.state.epoch = epoch
        lrs.append(trainer.state.lr(cfg))
    assert lrs == [1.0, 1.0, 0.5, 0.25, 0.125]


def test_dropout_is_active_in_training_only(tmp_path):
    text = PATTERN * 50
    vocab = Vocab.from_text(text)
    model_cfg, cfg = build_configs(len(vocab), cell="lstm", layers=2, hidden=16, dropout=0.5, batch_size=2,
                                   seq_len=8, optimizer="sgd", precision="float32")  # as evaluation computes
    trainer = Trainer(vocab, model_cfg, cfg, tmp_path, log=lambda m: None)
    step = compile_train_step(trainer.params, trainer.opt_state, model_cfg, cfg)
    batch = BatchStream(vocab.encode(text), 2, 8).batch(0)
    states, zero_lr = zero_states(model_cfg, 2, np.float32), np.asarray(0, dtype=np.float32)
    losses = [float(step(*batch, states, np.asarray(s, np.uint32), zero_lr)[0]) for s in (0, 1, 2, 1)]
    assert len(set(losses[:3])) == 3  # a new mask each update changes the loss
    assert losses[3] == losses[1]  # the masks are the update's: the same update, the same masks
    evaluate = compile_eval_step(trainer.params, model_cfg, (8, 2))
    a = evaluate(batch[0], batch[1], batch[2], states)[0]
    assert a == evaluate(batch[0], batch[1], batch[2], states)[0]  # evaluation is deterministic
    plain = compile_train_step(trainer.params, trainer.opt_state, replace(model_cfg, dropout=0.0), cfg)
    no_drop = plain(*batch, states, zero_lr)[0]
    assert float(a) / 16 == pytest.approx(float(no_drop), rel=1e-5)  # and equals the network without dropout


def test_validation_passes_show_their_progress(tmp_path, capsys):
    """With the bar on (a terminal), each validation pass counts its characters on a bar of its
    own, which goes when the pass is done; the training bar stays."""
    text = PATTERN * 30
    vocab = Vocab.from_text(text)
    model_cfg, train_cfg = build_configs(len(vocab), hidden=8, layers=1, batch_size=2, seq_len=8, max_steps=4,
                                         eval_every=2, val_frac=0.2)
    trainer = Trainer(vocab, model_cfg, train_cfg, tmp_path, log=lambda m: None, show_progress=True)
    trainer.compile()
    train_ids, val_ids = split(vocab.encode(text), train_cfg.val_frac)
    trainer.run(train_ids, val_ids)
    err = capsys.readouterr().err
    chars = len(trainer.val_stream) * trainer.val_stream.T * trainer.val_stream.B
    assert err.count(f"validation:   0%|          | 0.00/{chars:.1f}") == 2  # passes at steps 2 and 4
    assert err.rstrip().split("\r")[-1].startswith("jax on cpu: 100%")  # and the validation bar is gone
