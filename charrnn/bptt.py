"""Backpropagation through time written out: the training step's gradients of every layer.

`pytensor.grad` through a scan builds a backward scan that accumulates each weight gradient step
by step and recomputes what the forward pass already had. Here the forward scan of each layer also
emits what the backward needs (gate activations), the backward scan carries only dh (and dc) and
emits the gradient at each step's pre-activations, and every weight gradient is one large product
outside the scans (dW_h = H_prev^T dA over all T*B rows). The only product left inside the
backward loop is dA_t W_h^T. Same equations as model.py; tests/test_bptt.py checks these gradients
against pytensor.grad and finite differences.
"""
import pytensor
import pytensor.tensor as pt

from charrnn import model


def _sigmoid_grad(s):
    return s * (1 - s)


def _forward_layer(config, xw, h0, c0, W_h, b_h):
    """One layer over (T, B, G) input terms: (hs, what the backward needs, final states)."""
    H = h0.type.shape[-1]
    if config.cell == "lstm":
        def step(a_x, h, c, W_h):
            a = a_x + pt.dot(h, W_h)  # b_h is folded into a_x
            i, f = pt.sigmoid(a[:, :H]), pt.sigmoid(a[:, H : 2 * H])
            g, o = pt.tanh(a[:, 2 * H : 3 * H]), pt.sigmoid(a[:, 3 * H :])
            c_new = f * c + i * g
            tc = pt.tanh(c_new)
            h_new = pt.specify_shape(o * tc, h.type.shape)
            return h_new, pt.specify_shape(c_new, c.type.shape), pt.concatenate([i, f, g, o], axis=1), tc

        hs, cs, gates, tcs = pytensor.scan(step, sequences=[xw + b_h], outputs_info=[h0, c0, None, None],
                                           non_sequences=[W_h], return_updates=False, strict=True)
        return hs, {"cs": cs, "gates": gates, "tcs": tcs}, [hs[-1], cs[-1]]
    if config.cell == "gru":
        def step(a_x, h, W_h, b_h):
            hw = pt.dot(h, W_h) + b_h
            r = pt.sigmoid(a_x[:, :H] + hw[:, :H])
            z = pt.sigmoid(a_x[:, H : 2 * H] + hw[:, H : 2 * H])
            hn = hw[:, 2 * H :]
            n = pt.tanh(a_x[:, 2 * H :] + r * hn)
            h_new = pt.specify_shape((1 - z) * n + z * h, h.type.shape)
            return h_new, pt.concatenate([r, z, n], axis=1), hn

        hs, gates, hns = pytensor.scan(step, sequences=[xw], outputs_info=[h0, None, None],
                                       non_sequences=[W_h, b_h], return_updates=False, strict=True)
        return hs, {"gates": gates, "hns": hns}, [hs[-1]]

    def step(a_x, h, W_h):
        a = a_x + pt.dot(h, W_h)
        return pt.specify_shape(pt.maximum(a, 0) if config.activation == "relu" else pt.tanh(a), h.type.shape)

    hs = pytensor.scan(step, sequences=[xw + b_h], outputs_info=[h0], non_sequences=[W_h],
                       return_updates=False, strict=True)
    return hs, {}, [hs[-1]]


def _backward_layer(config, dhs, tape, h_prev, W_h):
    """Gradients at the pre-activations, from (T, B, H) gradients at the layer's outputs; h_prev
    is the (T, B, H) state each step started from.

    Returns (dA_h, dA_x): the gradient of the recurrent term h_{t-1} W_h + b_h and of the input
    term x_t W_x + b_x, both (T, B, G); they differ only for the GRU's candidate gate.
    """
    h0 = tape["h0"]
    H = h0.type.shape[-1]
    W_hT = W_h.T
    zeros = pt.zeros(h0.type.shape, dtype=h0.dtype)
    if config.cell == "lstm":
        c_prev = pt.concatenate([tape["c0"][None], tape["cs"][:-1]], axis=0)

        def step(dh_out, gates, tc, cp, dh, dc, W_hT):
            i, f, g, o = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H : 3 * H], gates[:, 3 * H :]
            dh = dh + dh_out
            dc = dc + dh * o * (1 - tc * tc)
            da = pt.concatenate([dc * g * _sigmoid_grad(i), dc * cp * _sigmoid_grad(f), dc * i * (1 - g * g),
                                 dh * tc * _sigmoid_grad(o)], axis=1)
            return pt.specify_shape(pt.dot(da, W_hT), dh.type.shape), pt.specify_shape(dc * f, dc.type.shape), da

        *_, das = pytensor.scan(step, sequences=[dhs[::-1], tape["gates"][::-1], tape["tcs"][::-1], c_prev[::-1]],
                                outputs_info=[zeros, zeros, None], non_sequences=[W_hT],
                                return_updates=False, strict=True)
        return das[::-1], das[::-1]
    if config.cell == "gru":
        def step(dh_out, gates, hn, hp, dh, W_hT):
            r, z, n = gates[:, :H], gates[:, H : 2 * H], gates[:, 2 * H :]
            dh = dh + dh_out
            dan = dh * (1 - z) * (1 - n * n)
            dar = dan * hn * _sigmoid_grad(r)
            daz = dh * (hp - n) * _sigmoid_grad(z)
            dhw = pt.concatenate([dar, daz, dan * r], axis=1)
            dxw = pt.concatenate([dar, daz, dan], axis=1)
            return pt.specify_shape(dh * z + pt.dot(dhw, W_hT), dh.type.shape), dhw, dxw

        _, dhws, dxws = pytensor.scan(step, sequences=[dhs[::-1], tape["gates"][::-1], tape["hns"][::-1], h_prev[::-1]],
                                      outputs_info=[zeros, None, None], non_sequences=[W_hT],
                                      return_updates=False, strict=True)
        return dhws[::-1], dxws[::-1]

    def step(dh_out, h, dh, W_hT):
        dh = dh + dh_out
        da = dh * (h > 0) if config.activation == "relu" else dh * (1 - h * h)
        return pt.specify_shape(pt.dot(da, W_hT), dh.type.shape), da

    _, das = pytensor.scan(step, sequences=[dhs[::-1], tape["hs"][::-1]], outputs_info=[zeros, None],
                           non_sequences=[W_hT], return_updates=False, strict=True)
    return das[::-1], das[::-1]


def forward(x, states0, p, config, keep=None):
    """run_layers for training: (top (T, B, H) after dropout, final states (S, B, H), tape)."""
    per_layer = config.state_size // config.layers
    inputs, finals, tape = None, [], []
    for layer in range(config.layers):
        W_x, b_x, W_h, b_h = (p[name] for name in model.layer_names(layer))
        xw = model.input_projection(x, W_x, b_x) if layer == 0 else pt.dot(inputs, W_x) + b_x
        h0 = states0[layer * per_layer]
        c0 = states0[layer * per_layer + 1] if per_layer == 2 else None
        hs, saved, last = _forward_layer(config, xw, h0, c0, W_h, b_h)
        finals.extend(last)
        tape.append({"inputs": inputs, "hs": hs, "h0": h0, "c0": c0, **saved})
        inputs = hs if keep is None else hs * keep[layer]
    return inputs, pt.stack(finals), tape


def backward(x, dtop, tape, p, config, keep=None):
    """Gradients of every layer's W_x, b_x, W_h, b_h from dtop, the (T, B, H) gradient at `top`."""
    grads, dout = {}, dtop
    V, H, G = config.vocab_size, config.hidden, model.GATES[config.cell] * config.hidden
    for layer in reversed(range(config.layers)):
        W_x, b_x, W_h, b_h = model.layer_names(layer)
        t = tape[layer]
        dhs = dout if keep is None else dout * keep[layer]
        h_prev = pt.concatenate([t["h0"][None], t["hs"][:-1]], axis=0)
        da_h, da_x = _backward_layer(config, dhs, t, h_prev, p[W_h])
        rows_h, rows_x = da_h.reshape((-1, G)), da_x.reshape((-1, G))
        grads[W_h] = pt.dot(h_prev.reshape((-1, H)).T, rows_h)
        grads[b_h] = rows_h.sum(axis=0)
        grads[b_x] = rows_x.sum(axis=0)
        if layer == 0:  # one-hot inputs: the rows of W_x that were read get their rows of dA
            one_hot = pt.eq(x.reshape((-1, 1)), pt.arange(V)[None, :]).astype(rows_x.dtype)
            grads[W_x] = pt.dot(one_hot.T, rows_x)
        else:
            grads[W_x] = pt.dot(t["inputs"].reshape((-1, H)).T, rows_x)
            dout = pt.dot(da_x, p[W_x].T)
    return grads
