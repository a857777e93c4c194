"""The checkpoint file: named parameter arrays plus a JSON metadata entry in one .npz, never pickled.

Layout (see README, "Checkpoint format"): the parameter arrays under their names (W_x, b_x, W_h,
b_h for the first layer, W_x.1, ... for the next, W_y, b_y) and `meta`, the UTF-8 bytes of a JSON
object stored as a uint8 array. `meta["format"]` is FORMAT and
`meta["version"]` is VERSION.
"""
import json
import lzma
import math
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
from numpy.lib import format as npformat

from charrnn.backend import write_atomically
from charrnn.configs import model_config
from charrnn.corpus import Vocab
from charrnn.model import param_shapes
from charrnn.optim import SLOTS, state_names

FORMAT = "charrnn-checkpoint"
VERSION = 2  # 2: cells, layers and optimizer settings (version 1, the lesson-6 network, still loads)


class CheckpointError(ValueError):
    """A file that cannot be loaded as a charrnn checkpoint; the message says why."""


class NoCheckpoint(CheckpointError):
    """There is no file at the path given."""


class NonFiniteWeights(CheckpointError):
    """A readable checkpoint whose weights hold NaN or infinities, so it cannot predict or train.
    Carries what was read (`params`, `meta`, `counts` as from `nonfinite`) so `info` can describe it."""

    def __init__(self, path, params, meta, counts):
        super().__init__(f"{path} has weights that are not finite numbers ({describe_nonfinite(counts)}); "
                         f"retrain, or use an earlier checkpoint")
        self.params, self.meta, self.counts = params, meta, counts


def save(path, params, meta):
    """Write params and meta to `path` atomically: a temporary file in the same directory,
    flushed to disk, then renamed over the old one. A failed write leaves the old file intact."""
    path = Path(path)
    meta = {"format": FORMAT, "version": VERSION, **meta}
    blob = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
    arrays = {name: np.asarray(value) for name, value in params.items()}
    if any(a.dtype.hasobject for a in arrays.values()):
        raise ValueError("checkpoint arrays must be numeric: object arrays would need pickle")
    write_atomically(path, lambda f: np.savez(f, meta=blob, **arrays), public=True, durable=True)


def save_run(path, params, opt_state, carried, meta):
    """Save a training run's checkpoint: the parameters, the optimizer state as `opt.<name>` and the
    carried (S, B, H) hidden state as `state` (when there is one), which --resume reads back."""
    arrays = {**params, **{f"opt.{name}": a for name, a in opt_state.items()}}
    save(path, arrays if carried is None else {**arrays, "state": carried}, meta)


def load(path, extras=False):
    """Return (params, meta) from a checkpoint written by `save`; with extras=True also the other
    arrays (optimizer state `opt.*` and carried `state`) as a third item.

    Reads only what it returns: each member's .npy header (dtype, shape) and inflated size are checked
    against the metadata before its data is read, and other members are never opened. Weights that
    are not finite raise NonFiniteWeights, which carries what was read."""
    try:
        with open(path, "rb") as f, zipfile.ZipFile(f) as z:  # our handle: closed even when ZipFile fails
            meta, params = _meta_and_params(path, z)
            rest = _extras(path, z, params, meta) if extras else None
    except FileNotFoundError:
        raise NoCheckpoint(f"no checkpoint at {path}") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path} is a directory, not a checkpoint file") from None
    except CheckpointError:
        raise
    except UNREADABLE as e:
        raise CheckpointError(f"{path} is not a readable charrnn checkpoint ({_one_line(e)})") from None
    counts = nonfinite(params)
    if counts:
        raise NonFiniteWeights(path, params, meta, counts)
    return (params, meta, rest) if extras else (params, meta)


# What zipfile, zlib and numpy raise on a damaged file: a bad header, a bad CRC, a truncated or
# undecodable stream, an unknown compression method, an encrypted member.
UNREADABLE = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, lzma.LZMAError, struct.error,
              NotImplementedError, RuntimeError, OverflowError)


def _one_line(error, limit=200):
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _meta_and_params(path, z):
    names = set(z.namelist())
    if "meta.npy" not in names:
        raise CheckpointError(f"{path} is not a charrnn checkpoint (no readable metadata)")
    meta = _meta(path, _member(path, z, "meta"))
    try:
        shapes = param_shapes(model_config(meta))
        Vocab.from_json(meta["vocab"])
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path} is damaged: its metadata lacks a usable vocabulary or model") from None
    missing = [name for name in shapes if f"{name}.npy" not in names]
    if missing:
        raise CheckpointError(f"{path} is damaged: missing {', '.join(missing)}")
    return meta, {name: _member(path, z, name, shape) for name, shape in shapes.items()}


def _extras(path, z, params, meta):
    """What --resume needs besides the weights: the state of the metadata's optimizer (`opt.<slot>.<param>`
    shaped as its parameter, adam's step count `opt.t`) and, once a run has taken a step, the carried
    `state` (S, B, H); checked as the parameters are."""
    train = meta.get("train", {})
    if train.get("optimizer") not in SLOTS:
        raise CheckpointError(f"{path} is damaged: its metadata names no known optimizer")
    shapes = {f"opt.{name}": params[name.split(".", 1)[1]].shape if "." in name else ()
              for name in state_names(train["optimizer"], params)}
    config = model_config(meta)
    if "state.npy" in z.namelist() or "resume" in meta and meta.get("step"):
        shapes["state"] = (config.state_size, train.get("batch_size"), config.hidden)
    missing = [name for name in shapes if f"{name}.npy" not in z.namelist()]
    if missing:
        raise CheckpointError(f"{path} is damaged: missing {', '.join(missing)}")
    return {name: _member(path, z, name, shape) for name, shape in shapes.items()}


MAX_META_BYTES = 64 << 20  # the JSON metadata; a vocabulary of a million characters needs a few MB
HEADER_BYTES = 1 << 16  # more than any .npy header (numpy refuses headers over 10,000 bytes)
MAX_RATIO = 64  # inflation a member of over a MiB may claim: weights barely compress (charrnn stores them)


def _member(path, z, name, shape=None):
    """Array `name` of the open zip `z`: a float array of `shape`, or with shape None the metadata's
    uint8 bytes. Its inflated size is checked against what it should hold before it is opened, and its
    .npy header (dtype, shape) before any of its data is read."""
    info = z.getinfo(f"{name}.npy")
    _check_size(path, name, info, HEADER_BYTES + (MAX_META_BYTES if shape is None else 8 * math.prod(shape)))
    with z.open(info) as f:
        dtype, found = _header(path, name, f)
        if shape is None and (dtype != np.uint8 or len(found) != 1) or shape is not None and (
                dtype.kind != "f" or found != shape):
            expected = "uint8 bytes of JSON" if shape is None else f"float{shape}"
            raise CheckpointError(f"{path} is damaged: {name} is {dtype}{found}, expected {expected}")
        size = f.tell() + dtype.itemsize * math.prod(found)
        if info.file_size != size:
            raise CheckpointError(f"{path} is damaged: {name} holds {info.file_size:,} bytes, its header says {size:,}")
        f.seek(0)
        return npformat.read_array(f, allow_pickle=False)


def _check_size(path, name, info, limit):
    """Refuse a member that would inflate to more than `limit` bytes, or compresses as no weights do."""
    if info.file_size > limit:
        raise CheckpointError(f"{path} is damaged: {name} inflates to {info.file_size:,} bytes, more than it "
                              f"can hold ({limit:,})")
    if info.file_size > (1 << 20) and info.file_size > MAX_RATIO * info.compress_size:
        raise CheckpointError(f"{path} is damaged: {name} claims to inflate {info.compress_size:,} bytes to "
                              f"{info.file_size:,}, more than weights compress")


def _header(path, name, f):
    """(dtype, shape) from the .npy header at the start of the open member `f`."""
    read = {(1, 0): npformat.read_array_header_1_0, (2, 0): npformat.read_array_header_2_0}.get(npformat.read_magic(f))
    if read is None:
        raise CheckpointError(f"{path} is not a readable charrnn checkpoint ({name} is not a plain .npy array)")
    shape, _, dtype = read(f)
    if dtype.hasobject:
        raise CheckpointError(f"{path} is not a readable charrnn checkpoint ({name} holds Python objects, "
                              f"which would need pickle)")
    return dtype, shape


def _meta(path, blob):
    try:
        meta = json.loads(blob.tobytes().decode("utf-8"))
    except ValueError:
        raise CheckpointError(f"{path} is not a charrnn checkpoint (no readable metadata)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a charrnn checkpoint (format is not {FORMAT!r})")
    if not isinstance(meta.get("version"), int) or meta["version"] > VERSION:
        raise CheckpointError(
            f"{path} has format version {meta.get('version')}; this charrnn reads up to {VERSION}, upgrade charrnn"
        )
    return meta


def nonfinite(params):
    """{name: {"NaN": n, "inf": n, "-inf": n}} for each array holding values that are not finite (counts > 0 only)."""
    counts = {}
    for name, a in params.items():
        found = {"NaN": int(np.isnan(a).sum()), "inf": int(np.isposinf(a).sum()), "-inf": int(np.isneginf(a).sum())}
        if any(found.values()):
            counts[name] = {kind: n for kind, n in found.items() if n}
    return counts


def describe_nonfinite(counts):
    """`W_y: 21,632 NaN; b_y: 3 inf`, from what `nonfinite` returns."""
    return "; ".join(f"{name}: " + ", ".join(f"{n:,} {kind}" for kind, n in found.items())
                     for name, found in counts.items())
