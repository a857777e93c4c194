"""Backpropagation through time written out: the training step's gradients of every layer.

`pytensor.grad` through a scan builds a backward scan that accumulates each weight gradient step
by step and recomputes what the forward pass already had. Here the forward scan of each layer also
emits what the backward needs (`model.run_layers(..., tape=True)`: the cell's gate activations),
the backward scan carries only the state gradients (dh, and dc for the LSTM) and emits the
gradient at each step's pre-activations, and every weight gradient is one large product outside
the scans (dW_h = H_prev^T dA over all T*B rows). The only product left inside the backward loop
is dA_t W_h^T. Each cell's backward step lives beside its forward step in cells.py;
tests/test_bptt.py checks these gradients against pytensor.grad and finite differences.
"""
from functools import partial

import pytensor
import pytensor.tensor as pt

from charrnn import cells, model


def backward_layer(cell, dhs, tape, W_h, unroll=1):
    """Gradients at the pre-activations from (T, B, H) gradients at the layer's outputs.

    Returns (dA_h, dA_x): the gradient of the recurrent term h_{t-1} W_h + b_h and of the input
    term x_t W_x + b_x, both (T, B, G); they differ only for a cell with split_input_grad (GRU).
    unroll: time steps per scan iteration (see model.blocks).
    """
    inputs = cell.backward_inputs(tape)
    zeros = [pt.zeros(s.type.shape, dtype=s.dtype) for s in tape["states0"]]
    n, k = len(inputs), len(zeros)

    def step(dh_block, *rest):  # (u, B, H) blocks of the reversed sequences, then the carried gradients
        inputs_block, dstates, W_hT = rest[:n], list(rest[n : n + k]), rest[-1]
        rows = []
        for j in range(unroll):
            back, da_h, da_x = cell.backward_step(dh_block[j], [s[j] for s in inputs_block], dstates, W_hT)
            dstates = [pt.specify_shape(d, z.type.shape) for d, z in zip(back, zeros, strict=True)]
            rows.append([da_h, *([da_x] if cell.split_input_grad else [])])
        return [*dstates, *(pt.stack(column) for column in zip(*rows, strict=True))]

    T = dhs.type.shape[0]
    sequences = [model.blocks(s[::-1], unroll) for s in (dhs, *inputs)]
    outs = pytensor.scan(step, sequences=sequences,
                         outputs_info=[*zeros, None, *([None] if cell.split_input_grad else [])],
                         non_sequences=[W_h.T], n_steps=model.iterations(T, unroll), return_updates=False,
                         strict=True)
    da_h = model.unblock(outs[k], T)[::-1]
    return da_h, (model.unblock(outs[k + 1], T)[::-1] if cell.split_input_grad else da_h)


def backward(x, dtop, tapes, p, config, keep=None, precision="float32", unroll=1, by_stream=False):
    """Gradients of every layer's W_x, b_x, W_h, b_h from dtop, the (T, B, H) gradient at the top
    layer's output (after dropout), given the tapes of model.run_layers(..., tape=True) (and its unroll);
    the products in `precision` (the one-hot product of layer 0 stays float32: a scatter-add of rows).
    by_stream: the weight gradients' rows are taken stream by stream (model.positions)."""
    cell = cells.cell(config, precision)
    grads, dout, V = {}, dtop, config.vocab_size
    rows = partial(model.positions, by_stream=by_stream)
    for layer in reversed(range(config.layers)):
        W_x, b_x, W_h, b_h = model.layer_names(layer)
        t = tapes[layer]
        dhs = dout if keep is None else dout * keep[layer]
        da_h, da_x = backward_layer(cell, dhs, t, p[W_h], unroll)
        rows_h, rows_x = rows(da_h), rows(da_x)
        grads[W_h] = cell.dot_t(t["h_prev"], da_h, rows)
        grads[b_h] = rows_h.sum(axis=0)
        grads[b_x] = rows_x.sum(axis=0)
        if layer == 0:  # one-hot inputs: the rows of W_x that were read get their rows of dA
            one_hot = pt.eq(rows(x)[:, None], pt.arange(V)[None, :]).astype(rows_x.dtype)
            grads[W_x] = pt.dot(one_hot.T, rows_x)
        else:
            grads[W_x] = cell.dot_t(t["inputs"], da_x, rows)
            dout = cell.dot(da_x, p[W_x].T)  # (T, B, H): one product per device (precision.dot)
    return grads
