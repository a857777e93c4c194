"""Named starting configurations for `charrnn train --preset NAME`; options given explicitly win."""
from dataclasses import fields, replace

from charrnn.model import ModelConfig
from charrnn.train import TrainConfig

PRESETS = {
    # The fast.ai lesson-6 notebook: relu RNN, 256 units, 8-character sequences from a zero state,
    # one plain SGD update per sequence on the summed loss, no clipping, no validation split.
    "lesson6": {
        "cell": "rnn", "hidden": 256, "layers": 1, "activation": "relu", "dropout": 0.0,
        "seq_len": 8, "batch_size": 1, "carry_state": False, "optimizer": "sgd", "lr": 0.01, "loss": "sum",
        "clip": 0.0, "lr_decay": 1.0, "val_frac": 0.0, "epochs": 1, "log_every": 1000, "checkpoint_every": 10000,
    },
}


def build_configs(vocab_size, preset=None, **options):
    """ModelConfig and TrainConfig from the defaults, then the preset, then explicit options (not None)."""
    values = {**PRESETS.get(preset, {}), **{k: v for k, v in options.items() if v is not None}}
    model_keys = {f.name for f in fields(ModelConfig)}
    model_cfg = replace(ModelConfig(vocab_size), **{k: v for k, v in values.items() if k in model_keys})
    train_cfg = replace(TrainConfig(), **{k: v for k, v in values.items() if k not in model_keys})
    return model_cfg, train_cfg
