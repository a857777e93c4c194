"""What a configuration means: defaults < preset < explicit options, a checkpoint's configuration
(version 1 included), what --resume may change, and the sampler's context."""
from dataclasses import asdict

import pytest

from charrnn import configs
from charrnn.configs import PRESETS, TrainConfig, build_configs
from charrnn.model import ModelConfig


def test_build_configs_takes_defaults_then_the_preset_then_explicit_options():
    model_cfg, train_cfg = build_configs(7)
    assert model_cfg == ModelConfig(7) and train_cfg == TrainConfig()
    model_cfg, train_cfg = build_configs(7, "lesson6")
    assert (model_cfg.cell, model_cfg.layers, train_cfg.seq_len, train_cfg.optimizer) == ("rnn", 1, 8, "sgd")
    assert train_cfg.eval_every == TrainConfig().eval_every  # not in the preset: the default stands
    model_cfg, train_cfg = build_configs(7, "lesson6", hidden=32, seq_len=16, lr=None)
    assert (model_cfg.hidden, train_cfg.seq_len) == (32, 16)  # explicit beats the preset
    assert train_cfg.lr == PRESETS["lesson6"]["lr"]  # None means "not given"


def meta_of(model_cfg, train_cfg, **more):
    return {"version": 2, "vocab": "abcdefg", "model": asdict(model_cfg), "train": asdict(train_cfg), **more}


def test_a_checkpoints_configuration_round_trips():
    model_cfg, train_cfg = build_configs(7, cell="lstm", layers=3, batch_size=5, carry_state=False)
    assert configs.checkpoint_configs(meta_of(model_cfg, train_cfg)) == (model_cfg, train_cfg)


def test_version_1_checkpoints_are_the_lesson6_network():
    meta = {"version": 1, "vocab": "abcd", "model": {"vocab_size": 4, "hidden": 6}, "train": {"seq_len": 8}}
    model_cfg, train_cfg = configs.checkpoint_configs(meta)
    assert model_cfg == ModelConfig(4, cell="rnn", hidden=6, layers=1, activation="relu", dropout=0.0)
    assert (train_cfg.batch_size, train_cfg.seq_len, train_cfg.carry_state, train_cfg.optimizer) == (1, 8, False, "sgd")


def test_a_checkpoint_from_before_the_schedules_keeps_char_rnns_whatever_the_default():
    model_cfg, train_cfg = build_configs(7)
    older = {k: v for k, v in asdict(train_cfg).items() if k not in ("lr_schedule", "warmup", "lr_floor")}
    assert configs.train_config({**meta_of(model_cfg, train_cfg), "train": older}).lr_schedule == "char-rnn"
    assert configs.BEFORE["lr_schedule"] == "char-rnn" and PRESETS["lesson6"]["lr_schedule"] == "char-rnn"
    meta = meta_of(model_cfg, train_cfg, resume={})
    _, resumed = configs.resume_configs(meta, {"lr_schedule": "cosine", "warmup": 0, "lr_floor": 0.5})
    assert (resumed.lr_schedule, resumed.warmup, resumed.lr_floor) == ("cosine", 0, 0.5)  # may change on resume


def test_a_model_that_disagrees_with_its_vocabulary_is_refused():
    with pytest.raises(ValueError, match="disagree"):
        configs.model_config({"version": 2, "vocab": "ab", "model": asdict(ModelConfig(3))})


def test_resume_takes_the_options_that_may_change_and_refuses_the_others():
    model_cfg, train_cfg = build_configs(7, hidden=16)
    meta = meta_of(model_cfg, train_cfg, resume={})
    got_model, got_train = configs.resume_configs(meta, {"lr": 0.5, "hidden": 16, "seq_len": None, "max_steps": 9})
    assert got_model == model_cfg and (got_train.lr, got_train.max_steps) == (0.5, 9)
    with pytest.raises(configs.OptionClash, match=r"--hidden, --seq-len cannot change on --resume"):
        configs.resume_configs(meta, {"hidden": 32, "seq_len": 3})
    with pytest.raises(configs.ConfigError, match="no training state"):
        configs.resume_configs(meta_of(model_cfg, train_cfg), {})


def test_the_sampler_reads_what_the_network_learnt_from():
    assert configs.sampler_context(TrainConfig(carry_state=True, seq_len=50)) is None
    assert configs.sampler_context(TrainConfig(carry_state=False, seq_len=50)) == 50


def test_precision_is_auto_for_new_runs_float32_for_older_checkpoints_and_may_change_on_resume():
    assert build_configs(7)[1].precision == "auto"
    auto = meta_of(*build_configs(7), resume={})
    assert configs.resume_configs(auto, {"precision": None})[1].precision == "auto"  # resolved again where it runs
    model_cfg, train_cfg = build_configs(7, precision="bfloat16")
    meta = meta_of(model_cfg, train_cfg, resume={})
    assert configs.checkpoint_configs(meta)[1].precision == "bfloat16"
    older = {**meta, "train": {k: v for k, v in meta["train"].items() if k != "precision"}}
    assert configs.checkpoint_configs(older)[1].precision == "float32"
    assert configs.resume_configs(meta, {"precision": "float32"})[1].precision == "float32"
    assert configs.resume_configs(meta, {"precision": None})[1].precision == "bfloat16"  # not given: the run's


def test_the_long_budgets_network_replaces_the_default_network_only():
    default, _ = build_configs(7)
    long = configs.long_network(default)
    assert (long.hidden, long.dropout) == (configs.LONG_NETWORK["hidden"], configs.LONG_NETWORK["dropout"])
    assert (long.cell, long.layers, long.vocab_size) == (default.cell, default.layers, 7)
    assert configs.long_network(default, cell="gru", layers=2, lr=1e-3) == long  # the default's cell and depth, given
    for options in ({"hidden": 256}, {"dropout": 0.1}, {"cell": "lstm"}, {"layers": 3}):
        assert configs.long_network(build_configs(7, **options)[0], **options) is None  # the run chose its network
    assert configs.long_network(build_configs(7, "lesson6")[0], "lesson6") is None
