"""`charrnn train` with the output layer initialised as PyTorch's nn.Linear initialises it: W_y and b_y
from uniform(-1/sqrt(H), 1/sqrt(H)), instead of charrnn's W_y from normal(0, sqrt(2/H)) and b_y zero.
The recurrent layers draw the same weights as charrnn's own (W_y is drawn after them; these two come
from a generator of their own, seeded with [--rng-seed, 7]), and the dropout masks are the same, so a
run pairs with charrnn's run of the same seed. An experiment for issue 14 (one of the two differences
between charrnn's and torch_train.py's networks at the start; the other: PyTorch draws the recurrent
layers' biases from the same uniform, charrnn starts them at zero), not an option of `train`.

    python benchmarks/output_init.py train ../shared/data/tinyshakespeare.txt --max-time 20m \\
        --lr 2e-3 --lr-schedule cosine --precision bfloat16 --rng-seed 1 --out /tmp/output-init-seed1

Every argument goes to the `charrnn` command line as given. Not part of the test suite.
"""
import sys

import numpy as np

from charrnn import model

charrnn_init = model.init_params


def linear_init(config, seed=0, dtype="float32"):
    """charrnn's initial weights, with W_y and b_y drawn as nn.Linear's."""
    arrays = charrnn_init(config, seed, dtype)
    rng = np.random.default_rng([seed, 7])
    k = 1 / np.sqrt(config.hidden)
    arrays["W_y"] = rng.uniform(-k, k, size=arrays["W_y"].shape).astype(dtype)
    arrays["b_y"] = rng.uniform(-k, k, size=arrays["b_y"].shape).astype(dtype)
    return arrays


if __name__ == "__main__":
    model.init_params = linear_init  # train.Trainer calls model.init_params
    from charrnn.cli import cli

    sys.exit(cli())
