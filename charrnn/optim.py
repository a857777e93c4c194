"""Parameter updates as PyTensor update lists."""
import pytensor


def sgd(params, loss, lr):
    """Plain SGD, w <- w - lr·dloss/dw, with gradients from pytensor.grad."""
    shared = list(params.values())
    grads = pytensor.grad(loss, shared)
    return [(w, w - lr * g) for w, g in zip(shared, grads, strict=True)]
