"""Backpropagation through time written out: the training step's gradients of every layer.

`pytensor.grad` through a scan builds a backward scan that accumulates each weight gradient step
by step and recomputes what the forward pass already had. Here the forward scan of each layer also
emits what the backward needs (gate activations), the backward scan carries only dh (and dc) and
emits the gradient at each step's pre-activations, and every weight gradient is one large product
outside the scans (dW_h = H_prev^T dA over all T*B rows). The only product left inside the
backward loop is dA_t W_h^T. Same equations as model.py; tests/test_bptt.py checks these gradients
against pytensor.grad and finite differences.

With wavefront=True, stacked layers run as a wavefront: one loop of T + L - 1 iterations in which
layer l works on step j - l, so the layers' recurrent products are one batched product and their
gate arithmetic one set of kernels, instead of L loops of T iterations one after the other. Layer
l's input at step s is layer l-1's output of step s, which the previous iteration made, so its
input product moves into the loop. The backward pass is the same wavefront in reverse. The train
step uses it with JAX, where it measured faster; PyTensor's C backend ran it slower.
"""
import numpy as np
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


def forward(x, states0, p, config, keep=None, wavefront=False):
    """run_layers for training: (top (T, B, H) after dropout, final states (S, B, H), tape).
    wavefront: run stacked layers as one wavefront loop (see the module's docstring)."""
    if wavefront and config.layers > 1:
        return _forward_wavefront(x, states0, p, config, keep)
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
    """Gradients of every layer's W_x, b_x, W_h, b_h from dtop, the (T, B, H) gradient at `top`;
    `tape` is what forward returned, layer by layer (a list) or as a wavefront (a dict)."""
    if isinstance(tape, dict):
        return _backward_wavefront(x, dtop, tape, p, config, keep)
    grads, dout = {}, dtop
    for layer in reversed(range(config.layers)):
        W_x, b_x, W_h, b_h = model.layer_names(layer)
        t = tape[layer]
        dhs = dout if keep is None else dout * keep[layer]
        h_prev = pt.concatenate([t["h0"][None], t["hs"][:-1]], axis=0)
        da_h, da_x = _backward_layer(config, dhs, t, h_prev, p[W_h])
        grads.update(_weight_grads(x, config, layer, da_h, da_x, h_prev, t["inputs"]))
        if layer > 0:
            dout = pt.dot(da_x, p[W_x].T)
    return grads


def _weight_grads(x, config, layer, da_h, da_x, h_prev, inputs):
    """One layer's weight gradients from its (T, B, G) dA_h and dA_x, the (T, B, H) states its
    steps started from and its (T, B, H) inputs (None for the first layer: one-hot ids x), each
    one product over all T*B rows."""
    V, H, G = config.vocab_size, config.hidden, model.GATES[config.cell] * config.hidden
    W_x, b_x, W_h, b_h = model.layer_names(layer)
    rows_h, rows_x = da_h.reshape((-1, G)), da_x.reshape((-1, G))
    grads = {W_h: pt.dot(h_prev.reshape((-1, H)).T, rows_h), b_h: rows_h.sum(axis=0), b_x: rows_x.sum(axis=0)}
    if inputs is None:  # one-hot inputs: the rows of W_x that were read get their rows of dA
        one_hot = pt.eq(x.reshape((-1, 1)), pt.arange(V)[None, :]).astype(rows_x.dtype)
        grads[W_x] = pt.dot(one_hot.T, rows_x)
    else:
        grads[W_x] = pt.dot(inputs.reshape((-1, H)).T, rows_x)
    return grads


# ------------------------------------------------------------------------------- stacked layers

def _stacked(p, config):
    """Every layer's W_h (L, H, G) and b_h (L, 1, G); W_x and b_x of the layers above the first."""
    names = [model.layer_names(layer) for layer in range(config.layers)]
    W_h = pt.stack([p[n[2]] for n in names])
    b_h = pt.stack([p[n[3]] for n in names])[:, None, :]
    W_x = pt.stack([p[n[0]] for n in names[1:]])
    b_x = pt.stack([p[n[1]] for n in names[1:]])[:, None, :]
    return W_h, b_h, W_x, b_x


def _by_iteration(seqs, L):
    """Per-layer (T, ...) sequences -> one (T + L - 1, L, ...) array whose [j, l] is layer l's
    step j - l (zeros where there is none)."""
    shifted = [pt.concatenate([pt.zeros_like(seq[:1]).repeat(l, axis=0), seq,
                               pt.zeros_like(seq[:1]).repeat(L - 1 - l, axis=0)]) for l, seq in enumerate(seqs)]
    return pt.stack(shifted, axis=1)


def _present(keep_seq, f=lambda a: a):
    """The dropout-mask sequence as a list of scan sequences: none without dropout."""
    return [] if keep_seq is None else [f(keep_seq)]


def _without_keep(step, keep, at):
    """A scan step whose argument number `at` is the dropout mask, called with None there when
    there is no mask sequence (the scan then passes one argument fewer)."""
    if keep is not None:
        return step
    return lambda *args: step(*args[:at], None, *args[at:])


def _layer_view(a, l, T):
    """Layer l's (T, ...) steps out of a (T + L - 1, L, ...) wavefront array."""
    return a[l : l + T, l]


def _forward_wavefront(x, states0, p, config, keep):
    T, B = x.type.shape
    L, H = config.layers, config.hidden
    G, per_layer = model.GATES[config.cell] * H, config.state_size // L
    dtype = states0.dtype
    W_h, b_h, W_x, b_x = _stacked(p, config)
    W_x0, b_x0 = (p[name] for name in model.layer_names(0)[:2])
    xw0 = model.input_projection(x, W_x0, b_x0)
    xw0 = pt.concatenate([xw0, pt.zeros((L - 1, B, G), dtype=dtype)])  # (J, B, G); layer 0 idles at the end
    # 1 where layer l has started (j >= l); before that it holds its initial state
    started = pt.constant((np.arange(T + L - 1)[:, None] >= np.arange(L)).astype(dtype)[:, :, None, None])
    # layer l >= 1 reads layer l-1's output of step j - l, made in iteration j - 1, with its dropout mask
    keep_in = None if keep is None else pt.concatenate([pt.zeros((1, L - 1, B, H), dtype=dtype),
                                                        _by_iteration([keep[layer] for layer in range(L)], L)[:-1, : L - 1]])
    h0 = pt.stack([states0[layer * per_layer] for layer in range(L)])  # (L, B, H)
    c0 = pt.stack([states0[layer * per_layer + 1] for layer in range(L)]) if per_layer == 2 else None

    def inputs(xw0_t, k_t, h):
        below = pt.matmul(h[:-1] if k_t is None else h[:-1] * k_t, W_x) + b_x  # (L-1, B, G), one batched product
        return pt.concatenate([xw0_t[None], below])

    def hold(m_t, new, old):
        return pt.specify_shape(m_t * new + (1 - m_t) * old, old.type.shape)

    if config.cell == "lstm":
        def step(xw0_t, m_t, k_t, h, c, W_h, b_h, W_x, b_x):
            a = inputs(xw0_t, k_t, h) + pt.matmul(h, W_h) + b_h
            i, f = pt.sigmoid(a[..., :H]), pt.sigmoid(a[..., H : 2 * H])
            g, o = pt.tanh(a[..., 2 * H : 3 * H]), pt.sigmoid(a[..., 3 * H :])
            c_new = f * c + i * g
            tc = pt.tanh(c_new)
            return hold(m_t, o * tc, h), hold(m_t, c_new, c), pt.concatenate([i, f, g, o], axis=-1), tc

        outputs_info = [h0, c0, None, None]
    elif config.cell == "gru":
        def step(xw0_t, m_t, k_t, h, W_h, b_h, W_x, b_x):
            a_x = inputs(xw0_t, k_t, h)
            hw = pt.matmul(h, W_h) + b_h
            r = pt.sigmoid(a_x[..., :H] + hw[..., :H])
            z = pt.sigmoid(a_x[..., H : 2 * H] + hw[..., H : 2 * H])
            hn = hw[..., 2 * H :]
            n = pt.tanh(a_x[..., 2 * H :] + r * hn)
            return hold(m_t, (1 - z) * n + z * h, h), pt.concatenate([r, z, n], axis=-1), hn

        outputs_info = [h0, None, None]
    else:
        def step(xw0_t, m_t, k_t, h, W_h, b_h, W_x, b_x):
            a = inputs(xw0_t, k_t, h) + pt.matmul(h, W_h) + b_h
            return hold(m_t, pt.maximum(a, 0) if config.activation == "relu" else pt.tanh(a), h)

        outputs_info = [h0]
    outs = pytensor.scan(_without_keep(step, keep, 2), sequences=[xw0, started, *_present(keep_in)],
                         outputs_info=outputs_info, non_sequences=[W_h, b_h, W_x, b_x], return_updates=False, strict=True)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    hs = outs[0]  # (J, L, B, H)
    tape = {"hs": hs, "h_prev": pt.concatenate([h0[None], hs[:-1]]), "h0": h0}
    if config.cell == "lstm":
        tape.update(cs=outs[1], c_prev=pt.concatenate([c0[None], outs[1][:-1]]), gates=outs[2], tcs=outs[3])
    elif config.cell == "gru":
        tape.update(gates=outs[1], hns=outs[2])
    finals = []
    for layer in range(L):  # layer l's last step is iteration T - 1 + l
        finals.append(hs[T - 1 + layer, layer])
        if per_layer == 2:
            finals.append(outs[1][T - 1 + layer, layer])
    top = _layer_view(hs, L - 1, T)
    return (top if keep is None else top * keep[L - 1]), pt.stack(finals), tape


def _backward_wavefront(x, dtop, tape, p, config, keep):
    T, B = x.type.shape
    L, H, G = config.layers, config.hidden, model.GATES[config.cell] * config.hidden
    dtype = dtop.dtype
    W_h, _, W_x, _ = _stacked(p, config)
    W_hT, W_xT = W_h.transpose(0, 2, 1), W_x.transpose(0, 2, 1)
    # what reaches the top layer from the loss, and the dropout masks of the layers below, per iteration
    d_top = dtop if keep is None else dtop * keep[L - 1]
    d_top = pt.concatenate([pt.zeros((L - 1, B, H), dtype=dtype), d_top])  # (J, B, H)
    keep_out = None if keep is None else _by_iteration([keep[layer] for layer in range(L)], L)[:, : L - 1]
    zeros_h = pt.zeros((L, B, H), dtype=dtype)
    zeros_up = pt.zeros((L - 1, B, G), dtype=dtype)

    def from_above(d_top_t, k_t, da_up):
        """(L, B, H) gradients at the layers' outputs: the loss's at the top, below it the
        input term of the layer above (its step of the previous iteration), through dropout."""
        below = pt.matmul(da_up, W_xT)
        return pt.concatenate([below if k_t is None else below * k_t, d_top_t[None]])

    rev = lambda a: a[::-1]  # noqa: E731  the backward pass walks the iterations from the last
    if config.cell == "lstm":
        def step(d_top_t, k_t, gates, tc, cp, dh, dc, da_up, W_hT, W_xT):
            i, f, g, o = gates[..., :H], gates[..., H : 2 * H], gates[..., 2 * H : 3 * H], gates[..., 3 * H :]
            dh = dh + from_above(d_top_t, k_t, da_up)
            dc = dc + dh * o * (1 - tc * tc)
            da = pt.concatenate([dc * g * _sigmoid_grad(i), dc * cp * _sigmoid_grad(f), dc * i * (1 - g * g),
                                 dh * tc * _sigmoid_grad(o)], axis=-1)
            return (pt.specify_shape(pt.matmul(da, W_hT), zeros_h.type.shape),
                    pt.specify_shape(dc * f, zeros_h.type.shape), pt.specify_shape(da[1:], zeros_up.type.shape), da)

        sequences = [rev(d_top), *_present(keep_out, rev), rev(tape["gates"]), rev(tape["tcs"]), rev(tape["c_prev"])]
        *_, das = pytensor.scan(_without_keep(step, keep, 1), sequences=sequences, outputs_info=[zeros_h, zeros_h, zeros_up, None],
                                non_sequences=[W_hT, W_xT], return_updates=False, strict=True)
        da_h = da_x = das[::-1]
    elif config.cell == "gru":
        def step(d_top_t, k_t, gates, hn, hp, dh, da_up, W_hT, W_xT):
            r, z, n = gates[..., :H], gates[..., H : 2 * H], gates[..., 2 * H :]
            dh = dh + from_above(d_top_t, k_t, da_up)
            dan = dh * (1 - z) * (1 - n * n)
            dar = dan * hn * _sigmoid_grad(r)
            daz = dh * (hp - n) * _sigmoid_grad(z)
            dhw = pt.concatenate([dar, daz, dan * r], axis=-1)
            dxw = pt.concatenate([dar, daz, dan], axis=-1)
            return (pt.specify_shape(dh * z + pt.matmul(dhw, W_hT), zeros_h.type.shape),
                    pt.specify_shape(dxw[1:], zeros_up.type.shape), dhw, dxw)

        sequences = [rev(d_top), *_present(keep_out, rev), rev(tape["gates"]), rev(tape["hns"]), rev(tape["h_prev"])]
        *_, dhws, dxws = pytensor.scan(_without_keep(step, keep, 1), sequences=sequences, outputs_info=[zeros_h, zeros_up, None, None],
                                       non_sequences=[W_hT, W_xT], return_updates=False, strict=True)
        da_h, da_x = dhws[::-1], dxws[::-1]
    else:
        def step(d_top_t, k_t, h, dh, da_up, W_hT, W_xT):
            dh = dh + from_above(d_top_t, k_t, da_up)
            da = dh * (h > 0) if config.activation == "relu" else dh * (1 - h * h)
            return (pt.specify_shape(pt.matmul(da, W_hT), zeros_h.type.shape),
                    pt.specify_shape(da[1:], zeros_up.type.shape), da)

        sequences = [rev(d_top), *_present(keep_out, rev), rev(tape["hs"])]
        *_, das = pytensor.scan(_without_keep(step, keep, 1), sequences=sequences, outputs_info=[zeros_h, zeros_up, None],
                                non_sequences=[W_hT, W_xT], return_updates=False, strict=True)
        da_h = da_x = das[::-1]

    grads = {}
    for layer in range(L):
        inputs = None
        if layer > 0:
            inputs = _layer_view(tape["hs"], layer - 1, T)
            inputs = inputs if keep is None else inputs * keep[layer - 1]
        grads.update(_weight_grads(x, config, layer, _layer_view(da_h, layer, T), _layer_view(da_x, layer, T),
                                   _layer_view(tape["h_prev"], layer, T), inputs))
    return grads
