"""The cache of encoded corpora: a corpus file's ids as a read-only memory map in the user's cache.

A second run on the same file (same resolved path, size, modification time and encoding) neither
reads nor decodes its text, and a corpus larger than memory still trains: the ids are paged in as
the batches need them. An entry is the raw ids (KEY.ids) and a JSON sidecar with the vocabulary
(KEY.json), each written to a temporary file and renamed into place, the sidecar last, so an
interrupted run leaves nothing that loads. Entries live in cache_dir(), never beside the corpus.
"""
import codecs
import contextlib
import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np

from charrnn import backend, shakespeare
from charrnn.corpus import CHUNK, CorpusError, Vocab, code_points, decode_pieces, read_text, unreadable

FORMAT = 1  # of the sidecar; an entry in another format is rebuilt


def cache_dir():
    """The ids folder of charrnn's directory in the user's cache (backend.cache_dir)."""
    return backend.cache_dir() / "ids"


def training_ids(path, encoding="utf-8", log=print):
    """(Vocab, ids) of the training text: the file at `path` as `corpus_ids` reads it, or with no
    path the built-in Shakespeare corpus (shakespeare.CorpusNotInstalled when it is not installed)."""
    if path is not None:
        return corpus_ids(path, encoding, log)
    text = shakespeare.text()
    log("no corpus given: training on Shakespeare's plays (the built-in corpus, `charrnn corpus shakespeare`)")
    vocab = Vocab.from_text(text)
    return vocab, vocab.encode(text)


def corpus_ids(path, encoding="utf-8", log=print, chunk=CHUNK):
    """(Vocab, ids) of the text file at `path`, the ids memory-mapped from the cache (encoded into it
    on a first run, `chunk` bytes at a time).

    stdin ("-") and what is not a regular file with a size (a pipe, /proc) are read into memory,
    as is the file when the cache cannot be written. `log` says in one line when the file is
    encoded, and when the cache cannot be written.
    """
    try:
        info = os.stat(path) if path != "-" else None
    except OSError:
        info = None  # read_text says why it cannot be read
    if info is None or not stat.S_ISREG(info.st_mode) or info.st_size == 0:
        return in_memory(path, encoding)
    entry = Entry(path, info, encoding)
    found = entry.load()
    if found is not None:
        return found
    log(f"encoding {path} into the cache of encoded corpora in {entry.directory} (once per version of the file)")
    try:
        return entry.build(chunk)
    except OSError as e:
        log(f"cannot cache the encoded corpus in {entry.directory} ({e.strerror or e}); encoding it in memory")
        return in_memory(path, encoding)


def in_memory(path, encoding):
    """(Vocab, ids) of the text at `path` (or stdin for "-"), read whole into memory."""
    text = read_text(path, encoding)
    vocab = Vocab.from_text(text)
    return vocab, vocab.encode(text)


class Entry:
    """A corpus file's entry in the cache, as the file is now."""

    def __init__(self, path, info, encoding):
        self.path, self.info, self.encoding = path, info, encoding  # info: the file's os.stat
        try:
            encoding = codecs.lookup(encoding).name  # utf8 and UTF-8 share an entry
        except LookupError:
            pass  # decode_pieces says so
        self.key = {"corpus": str(Path(path).resolve()), "size": info.st_size, "mtime_ns": info.st_mtime_ns,
                    "encoding": encoding}
        self.directory = cache_dir()
        self.prefix = _digest(self.key["corpus"])  # shared by the entries of every version of the file
        self.name = f"{self.prefix}-{_digest([info.st_size, info.st_mtime_ns, encoding])}"

    def load(self):
        """(Vocab, ids) from a complete entry, or None."""
        try:
            meta = json.loads((self.directory / f"{self.name}.json").read_text(encoding="utf-8"))
            if meta.get("format") != FORMAT or meta.get("key") != self.key:
                return None
            vocab = Vocab.from_json(meta["vocab"])
            ids = np.memmap(self.directory / f"{self.name}.ids", dtype=vocab.dtype, mode="r")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # missing, unreadable or damaged: encode again
        return (vocab, ids) if len(ids) == meta["length"] else None

    def build(self, chunk=CHUNK):
        """(Vocab, ids) encoded into the cache in two passes over the file: the vocabulary, then the
        ids. OSError when the cache cannot be written; nothing half-written is left."""
        self.directory.mkdir(parents=True, exist_ok=True)
        vocab, length = self._scan(chunk)
        path = self.directory / f"{self.name}.ids"
        backend.write_atomically(path, lambda f: self._encode(f, vocab, length, chunk))
        meta = {"format": FORMAT, "key": self.key, "length": length, "vocab": vocab.to_json()}
        sidecar = json.dumps(meta).encode("ascii")
        backend.write_atomically(self.directory / f"{self.name}.json", lambda f: f.write(sidecar))
        self._prune()
        return vocab, np.memmap(path, dtype=vocab.dtype, mode="r")

    def _pieces(self, chunk):
        """The file's text, a piece per `chunk` bytes, checked as corpus.decode checks it."""
        try:
            with open(self.path, "rb") as f:
                yield from decode_pieces(f, self.encoding, str(self.path), chunk)
        except OSError as e:
            raise unreadable(self.path, e) from None

    def _scan(self, chunk):
        """The vocabulary and the length in characters of the file's text."""
        counts = np.zeros(0, dtype=np.int64)  # per code point
        for piece in self._pieces(chunk):
            more = np.bincount(code_points(piece))
            counts = np.pad(counts, (0, max(0, len(more) - len(counts))))
            counts[: len(more)] += more
        return Vocab("".join(map(chr, np.flatnonzero(counts)))), int(counts.sum())

    def _encode(self, f, vocab, length, chunk):
        """Write the ids of the file's text to `f`; CorpusError when the file changed since the scan."""
        changed = CorpusError(f"{self.path} changed while it was being read; run again once it is written")
        written = 0
        for piece in self._pieces(chunk):
            try:
                f.write(vocab.encode(piece))
            except KeyError:  # a character the scan did not see
                raise changed from None
            written += len(piece)
        try:
            info = os.stat(self.path)
        except OSError as e:
            raise unreadable(self.path, e) from None
        if written != length or (info.st_size, info.st_mtime_ns) != (self.info.st_size, self.info.st_mtime_ns):
            raise changed

    def _prune(self):
        """Remove the entries of earlier versions of the file."""
        for old in self.directory.glob(f"{self.prefix}-*"):
            if old.suffix in (".ids", ".json") and old.stem != self.name:
                with contextlib.suppress(OSError):  # another run may be removing it too
                    old.unlink()


def _digest(value):
    return hashlib.sha256(json.dumps(value).encode("utf-8")).hexdigest()[:16]
