"""The checkpoint file: named parameter arrays plus a JSON metadata entry in one .npz, never pickled.

Layout (see README, "Checkpoint format"): the parameter arrays under their names (W_x, b_x, W_h,
b_h for the first layer, W_x.1, ... for the next, W_y, b_y) and `meta`, the UTF-8 bytes of a JSON
object stored as a uint8 array. `meta["format"]` is FORMAT and
`meta["version"]` is VERSION.
"""
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from charrnn.configs import model_config
from charrnn.model import param_shapes

FORMAT = "charrnn-checkpoint"
VERSION = 2  # 2: cells, layers and optimizer settings (version 1, the lesson-6 network, still loads)


class CheckpointError(ValueError):
    """A file that cannot be loaded as a charrnn checkpoint; the message says why."""


def save(path, params, meta):
    """Write params and meta to `path` atomically: a temporary file in the same directory,
    flushed to disk, then renamed over the old one. A failed write leaves the old file intact."""
    path = Path(path)
    meta = {"format": FORMAT, "version": VERSION, **meta}
    blob = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
    arrays = {name: np.asarray(value) for name, value in params.items()}
    if any(a.dtype.hasobject for a in arrays.values()):
        raise ValueError("checkpoint arrays must be numeric: object arrays would need pickle")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp makes it private; a checkpoint is an ordinary file
        with os.fdopen(fd, "wb") as f:
            np.savez(f, meta=blob, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_run(path, params, opt_state, carried, meta):
    """Save a training run's checkpoint: the parameters, the optimizer state as `opt.<name>` and the
    carried (S, B, H) hidden state as `state` (when there is one), which --resume reads back."""
    arrays = {**params, **{f"opt.{name}": a for name, a in opt_state.items()}}
    save(path, arrays if carried is None else {**arrays, "state": carried}, meta)


def umask():
    """The process umask (reading it means setting it: set it back at once)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load(path, extras=False):
    """Return (params, meta) from a checkpoint written by `save`; with extras=True also the other
    arrays (optimizer state `opt.*` and carried `state`) as a third item."""
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:  # our handle: closed even when np.load fails
            arrays = {name: z[name] for name in z.files}
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path} is a directory, not a checkpoint file") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path} is not a readable charrnn checkpoint ({e})") from None
    meta = _meta(path, arrays)
    params = _params(path, arrays, meta)
    if extras:
        return params, meta, {name: a for name, a in arrays.items() if name not in params and name != "meta"}
    return params, meta


def _meta(path, arrays):
    try:
        meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
    except (KeyError, ValueError):
        raise CheckpointError(f"{path} is not a charrnn checkpoint (no readable metadata)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a charrnn checkpoint (format is not {FORMAT!r})")
    if not isinstance(meta.get("version"), int) or meta["version"] > VERSION:
        raise CheckpointError(
            f"{path} has format version {meta.get('version')}; this charrnn reads up to {VERSION}, upgrade charrnn"
        )
    return meta


def _params(path, arrays, meta):
    try:
        shapes = param_shapes(model_config(meta))
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path} is damaged: its metadata lacks a usable vocabulary or model") from None
    missing = [name for name in shapes if name not in arrays]
    if missing:
        raise CheckpointError(f"{path} is damaged: missing {', '.join(missing)}")
    for name, shape in shapes.items():
        if arrays[name].shape != shape or arrays[name].dtype.kind != "f":
            raise CheckpointError(f"{path} is damaged: {name} is {arrays[name].dtype}{arrays[name].shape}, "
                                  f"expected float{shape}")
    return {name: arrays[name] for name in shapes}
