"""The text views: info's report."""
from charrnn.report import format_info


def described(**changes):
    report = {
        "checkpoint": "run/best.npz", "format": "charrnn-checkpoint", "version": 2, "charrnn_version": "0.1.0",
        "model": {"vocab_size": 3, "cell": "lstm", "hidden": 16, "layers": 2, "activation": "relu", "dropout": 0.2},
        "train": {"optimizer": "adam", "lr": 0.002, "lr_schedule": "cosine", "batch_size": 4, "seq_len": 8, "carry_state": True,
                  "backend": "jax"},
        "vocab_size": 3, "vocab": "abc", "parameters": 12_345, "nonfinite": {}, "step": 1_200, "epoch": 2.5, "loss": 1.23456,
        "val_loss": None, "best_val_loss": None,
    }
    return {**report, **changes}


def test_format_info_lays_out_every_line():
    assert format_info(described()).splitlines() == [
        "checkpoint   run/best.npz (charrnn-checkpoint version 2, charrnn 0.1.0)",
        "model        lstm, 2 layer(s) of 16, dropout 0.2",
        "parameters   12,345",
        "weights      finite",
        'vocabulary   3 characters: "abc"',
        "training     adam, lr 0.002 (cosine schedule), batch 4 x seq 8, carried state, backend jax",
        "progress     1,200 updates, 2.50 epochs",
        "loss         train 1.2346, validation -, best validation - nats/char",
    ]


def test_format_info_names_the_rnn_activation_and_cuts_a_long_vocabulary():
    rnn = {"vocab_size": 100, "cell": "rnn", "hidden": 8, "layers": 1, "activation": "tanh", "dropout": 0.0}
    lines = format_info(described(model=rnn, vocab="x" * 100, vocab_size=100)).splitlines()
    assert lines[1] == "model        rnn (tanh), 1 layer(s) of 8, dropout 0.0"
    assert lines[4] == 'vocabulary   100 characters: "' + "x" * 77 + '..."'


def test_format_info_says_which_weights_are_not_finite():
    lines = format_info(described(nonfinite={"W_y": {"NaN": 21_632}, "b_y": {"inf": 1, "-inf": 2}})).splitlines()
    assert lines[3] == "weights      not finite: W_y: 21,632 NaN; b_y: 1 inf, 2 -inf"


def test_format_info_says_what_lr_auto_chose():
    auto = {**described()["train"], "lr": "auto"}
    assert format_info(described(train=auto, chosen_lr=0.00245)).splitlines()[5].startswith(
        "training     adam, lr auto (0.00245 for the budget) (cosine schedule)")
    assert "lr auto (not chosen yet)" in format_info(described(train=auto, chosen_lr=None))
