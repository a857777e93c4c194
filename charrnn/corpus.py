"""Reading text, the vocabulary that turns it into ids and back, and the sequence stream."""
import sys
from pathlib import Path

import numpy as np


class CorpusError(ValueError):
    """Text that charrnn cannot use; the message says why and what to do."""


def read_text(path, encoding="utf-8"):
    """Return the text of `path` (or stdin for "-") decoded with `encoding`.

    A UTF-8 byte-order mark is dropped; CRLF line endings are kept as two characters.
    """
    name = "<stdin>" if path == "-" else str(path)
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as e:
        raise CorpusError(f"cannot read {name}: {e.strerror or e}") from None
    return decode(raw, encoding, name)


def decode(raw, encoding, name):
    """Decode bytes strictly, naming the first bad byte's offset when they do not decode."""
    try:
        text = raw.decode(encoding)
    except LookupError:
        raise CorpusError(f"unknown encoding {encoding!r}; try --encoding utf-8 or latin-1") from None
    except UnicodeDecodeError as e:
        raise CorpusError(
            f"{name}: byte 0x{raw[e.start]:02x} at offset {e.start} is not valid {encoding}; "
            f"pass --encoding to read it another way"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]  # a byte-order mark is not part of the text
    if "\x00" in text:
        raise CorpusError(f"{name}: NUL character at offset {text.index(chr(0))}; this looks like a binary file, not text")
    if not text.strip():
        raise CorpusError(f"{name} is empty (or only whitespace); give charrnn some text to learn from")
    return text


class Vocab:
    """The sorted set of characters (Unicode code points) of a corpus; owns encoding and decoding."""

    def __init__(self, chars):
        self.chars = "".join(chars)
        self._codes = np.array([ord(c) for c in self.chars], dtype=np.uint32)  # sorted code points
        if len(self.chars) == 0 or np.any(np.diff(self._codes.astype(np.int64)) <= 0):
            raise ValueError("a vocabulary is a non-empty string of distinct characters in code-point order")

    @classmethod
    def from_text(cls, text):
        return cls(sorted(set(text)))

    def __len__(self):
        return len(self.chars)

    def __eq__(self, other):
        return isinstance(other, Vocab) and self.chars == other.chars

    @property
    def dtype(self):
        """The smallest unsigned integer dtype that holds every id."""
        return np.min_scalar_type(len(self) - 1)

    def missing(self, text):
        """The characters of `text` that are not in the vocabulary, sorted."""
        return sorted(set(text) - set(self.chars))

    def encode(self, text):
        """Ids of `text` as an array of `self.dtype`; KeyError names characters not in the vocabulary."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
        ids = np.searchsorted(self._codes, codes)
        known = self._codes[np.minimum(ids, len(self) - 1)] == codes
        if not known.all():
            raise KeyError(self.missing(text))
        return ids.astype(self.dtype)

    def decode(self, ids):
        return self._codes[np.asarray(ids, dtype=np.int64)].astype("<u4").tobytes().decode("utf-32-le")

    def to_json(self):
        return self.chars

    @classmethod
    def from_json(cls, chars):
        return cls(chars)


def sequences(ids, seq_len):
    """Non-overlapping (inputs, targets) chunks: inputs ids[i:i+T], targets ids[i+1:i+T+1], i = 0, T, 2T, ...

    Returns two (N, T) views of `ids`, N = (len(ids) - 1) // T; nothing is copied.
    """
    n = (len(ids) - 1) // seq_len
    if n < 1:
        raise CorpusError(
            f"the corpus has {len(ids)} characters; one sequence of --seq-len {seq_len} needs at least {seq_len + 1}"
        )
    inputs = ids[: n * seq_len].reshape(n, seq_len)
    targets = ids[1 : n * seq_len + 1].reshape(n, seq_len)
    return inputs, targets


def as_column(ids):
    """(N,) ids -> a contiguous (N, 1) int32 array: one sequence as a batch of one, as the graphs take it."""
    return np.ascontiguousarray(ids, dtype=np.int32).reshape(-1, 1)
