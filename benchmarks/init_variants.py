"""`charrnn train` from another initialisation than charrnn's, for issue 14's comparisons with
PyTorch's layers (torch_train.py). Each variant changes some of the weights `model.init_params`
draws and keeps the rest, so a run pairs, seed by seed, with charrnn's own run of the same seed (the
same recurrent weights and the same dropout masks):

- `lesson-output`: the output layer of charrnn before it was drawn as nn.Linear's: W_y normal(0,
  sqrt(2/H)), drawn from the main generator after the layers, and b_y zero. This reproduces the
  default's runs before then, and `benchmarks/output_init.py` (removed) drew the default's present
  output layer from the same generator, `np.random.default_rng([seed, 7])`.
- `torch-biases`: also the recurrent layers' biases b_x and b_h drawn as PyTorch's (uniform(-1/sqrt(H),
  1/sqrt(H)), added to charrnn's, so the LSTM's forget-gate block keeps its +1), from a generator of
  their own, `np.random.default_rng([seed, 8])`. charrnn starts them at zero.

    python benchmarks/init_variants.py torch-biases train ../shared/data/tinyshakespeare.txt \\
        --max-time 20m --rng-seed 1 --out /tmp/torch-biases-seed1

Every argument after the variant goes to the `charrnn` command line as given. Not part of the test
suite.
"""
import sys

import numpy as np

from charrnn import cells, model

charrnn_init = model.init_params


def lesson_output():
    """gru and lstm draw the output layer as RNN does, the lesson's, which all cells drew before."""
    cells.Cell.init_output = cells.RNN.init_output


def with_torch_biases(config, seed=0, dtype="float32"):
    """charrnn's initial weights with PyTorch's recurrent biases added."""
    arrays = charrnn_init(config, seed, dtype)
    rng = np.random.default_rng([seed, 8])
    k = 1 / np.sqrt(config.hidden)
    for layer in range(config.layers):
        _, b_x, _, b_h = model.layer_names(layer)
        for name in (b_x, b_h):
            arrays[name] = (arrays[name] + rng.uniform(-k, k, size=arrays[name].shape)).astype(dtype)
    return arrays


def torch_biases():
    model.init_params = with_torch_biases  # train.Trainer calls model.init_params


VARIANTS = {"lesson-output": lesson_output, "torch-biases": torch_biases}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in VARIANTS:
        sys.exit(f"usage: init_variants.py {{{','.join(VARIANTS)}}} CHARRNN_ARGS...")
    VARIANTS[sys.argv.pop(1)]()
    from charrnn.cli import cli

    sys.exit(cli())
