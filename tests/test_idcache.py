"""The cache of encoded corpora, against the in-memory path (read_text, Vocab.from_text, encode)."""
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import checkpoint, idcache
from charrnn.cli import cli
from charrnn.corpus import CorpusError, Vocab
from conftest import PATTERN, tmpfs

MIXED = "Ünïcödé: naïve café, 日本語 and 🙂\r\nplain ASCII too.\n"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache directory of this test's own."""
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "ids"


def corpus_file(tmp_path, data):
    """`data` (bytes, or text as UTF-8) as the only file of a directory, so writes beside it show."""
    (tmp_path / "corpus").mkdir(exist_ok=True)
    path = tmp_path / "corpus" / "c.txt"
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


def reference(text):
    vocab = Vocab.from_text(text)
    return vocab, vocab.encode(text)


def entries(cache):
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


@pytest.mark.parametrize("text", [PATTERN * 50, MIXED * 20, "".join(chr(0x10000 + i) for i in range(300))])
@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 4096])
def test_ids_equal_the_in_memory_encoding_whatever_the_chunks(tmp_path, cache, text, chunk):
    path = corpus_file(tmp_path, text)  # chunks of 1-5 bytes split every multi-byte character somewhere
    vocab, ids = idcache.corpus_ids(path, chunk=chunk)
    want_vocab, want_ids = reference(text)
    assert vocab == want_vocab and ids.dtype == want_ids.dtype
    np.testing.assert_array_equal(ids, want_ids)
    assert isinstance(ids, np.memmap) and not ids.flags.writeable
    assert len(entries(cache)) == 2 and os.listdir(path.parent) == ["c.txt"]  # ids + sidecar, nothing beside


def test_a_hit_does_not_read_the_file_and_a_change_misses(tmp_path, cache):
    path = corpus_file(tmp_path, PATTERN * 20)
    vocab, ids = idcache.corpus_ids(path)
    info = path.stat()
    path.write_bytes(b"\xff" * info.st_size)  # not UTF-8 at all, with the size and time of the cached text
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    notices = []
    hit_vocab, hit_ids = idcache.corpus_ids(path, log=notices.append)
    assert hit_vocab == vocab and notices == []  # not even "encoding ..."
    np.testing.assert_array_equal(hit_ids, ids)
    latin = idcache.corpus_ids(path, "latin-1")[0]  # another encoding is another entry: the bytes are read
    assert latin.chars == "\xff"
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + 1))
    with pytest.raises(CorpusError, match="byte 0xff at offset 0 is not valid utf-8"):
        idcache.corpus_ids(path)
    path.write_bytes(PATTERN.encode() * 20 + b"!")
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))  # the old time, another size
    assert idcache.corpus_ids(path)[0] == Vocab.from_text(PATTERN + "!")
    assert len(entries(cache)) == 2  # earlier versions of the file are pruned


def test_utf8_and_utf_8_share_an_entry(tmp_path, cache):
    path = corpus_file(tmp_path, MIXED)
    idcache.corpus_ids(path, "utf8")
    before = entries(cache)
    idcache.corpus_ids(path, "UTF-8")
    assert entries(cache) == before and len(before) == 2


def python_offset(raw, encoding):
    """Where Python's own one-shot decoder says the first bad byte is."""
    with pytest.raises(UnicodeDecodeError) as e:
        raw.decode(encoding)
    return e.value.start


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 4096])
def test_errors_name_the_same_offsets_across_chunks(tmp_path, cache, chunk):
    cases = [
        ("é".encode() * 10 + b"\xff" + b"abc", "utf-8", "byte 0xff at offset {} is not valid utf-8"),
        (b"abc" + "日".encode()[:2] + b"def", "utf-8", "byte 0xe6 at offset {} is not valid utf-8"),
        (b"abc" + "日".encode()[:2], "utf-8", "byte 0xe6 at offset {} is not valid utf-8"),  # cut off at the end
        ("ab".encode("utf-16") + b"\x00\xdc" + b"c\x00", "utf-16", "byte 0x00 at offset {} is not valid utf-16"),
    ]
    for raw, encoding, message in cases:
        path = corpus_file(tmp_path, raw)
        with pytest.raises(CorpusError) as e:
            idcache.corpus_ids(path, encoding, chunk=chunk)
        assert str(e.value) == f"{path}: {message.format(python_offset(raw, encoding))}; " \
                               f"pass --encoding to read it another way"
    for raw, message in [(b"\xef\xbb\xbf" + "héllo\x00".encode(), "NUL character at offset 5;"),
                         (b" \n\t " * 5, r"is empty \(or only whitespace\)")]:
        with pytest.raises(CorpusError, match=message):
            idcache.corpus_ids(corpus_file(tmp_path, raw), chunk=chunk)
    with pytest.raises(CorpusError, match="unknown encoding 'no-such-codec'"):
        idcache.corpus_ids(corpus_file(tmp_path, b"abc"), "no-such-codec", chunk=chunk)
    assert not any(cache.glob("*.ids")) and os.listdir(tmp_path / "corpus") == ["c.txt"]


@pytest.mark.parametrize("chunk", [1, 2, 4096])
def test_a_byte_order_mark_is_dropped_once(tmp_path, cache, chunk):
    for raw, encoding in [(b"\xef\xbb\xbf" + "\ufeffab\r\n".encode(), "utf-8"), ("ab\r\n".encode("utf-16"), "utf-16")]:
        text = raw.decode(encoding).removeprefix("\ufeff")
        vocab, ids = idcache.corpus_ids(corpus_file(tmp_path, raw), encoding, chunk=chunk)
        assert vocab.decode(ids) == text


def test_an_unwritable_cache_falls_back_to_memory(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "file" / "cache"))
    path = corpus_file(tmp_path, MIXED)
    notices = []
    vocab, ids = idcache.corpus_ids(path, log=notices.append)
    assert (vocab, ids.tolist()) == (reference(MIXED)[0], reference(MIXED)[1].tolist())
    assert len(notices) == 2 and "cannot cache the encoded corpus" in notices[1] and "in memory" in notices[1]
    assert os.listdir(path.parent) == ["c.txt"]


def test_a_full_cache_disk_falls_back_and_leaves_nothing(tmp_path, monkeypatch):
    with tmpfs(tmp_path / "tiny", "size=64k") as mount:
        monkeypatch.setenv("CHARRNN_CACHE_DIR", str(mount))
        path = corpus_file(tmp_path, PATTERN * 10_000)  # 130 kB of ids: more than the disk holds
        notices = []
        vocab, ids = idcache.corpus_ids(path, log=notices.append)
        np.testing.assert_array_equal(ids, reference(PATTERN * 10_000)[1])
        assert len(notices) == 2 and "No space left on device" in notices[1]
        assert list((mount / "ids").iterdir()) == []  # no temporary file, no sidecar


def test_an_interrupted_or_damaged_entry_is_encoded_again(tmp_path, cache, monkeypatch):
    path = corpus_file(tmp_path, MIXED * 10)

    def interrupted(self, f, vocab, length, chunk):
        f.write(b"\0" * 10)
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(idcache.Entry, "_encode", interrupted)
        with pytest.raises(KeyboardInterrupt):
            idcache.corpus_ids(path)
    assert entries(cache) == []
    want = reference(MIXED * 10)[1]
    np.testing.assert_array_equal(idcache.corpus_ids(path)[1], want)
    [ids_file] = cache.glob("*.ids")
    ids_file.write_bytes(ids_file.read_bytes()[:-1])  # a damaged entry: one id short of its sidecar's length
    np.testing.assert_array_equal(idcache.corpus_ids(path)[1], want)
    sidecar = next(cache.glob("*.json"))
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "format": 0}))
    np.testing.assert_array_equal(idcache.corpus_ids(path)[1], want)


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CHARRNN_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert idcache.cache_dir() == tmp_path / "mine" / "ids"
    monkeypatch.delenv("CHARRNN_CACHE_DIR")
    assert idcache.cache_dir() == tmp_path / "xdg" / "charrnn" / "ids"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/xdg")  # not absolute: ignored, as the XDG spec says
    assert idcache.cache_dir() == tmp_path / "home" / ".cache" / "charrnn" / "ids"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert idcache.cache_dir() == tmp_path / "home" / ".cache" / "charrnn" / "ids"


def test_resume_maps_cached_ids_into_a_larger_checkpoint_vocabulary():
    ids = np.array([0, 1, 1, 0], dtype=np.uint8)  # "bddb" in the corpus's own vocabulary "bd"
    vocab = Vocab("abcd")
    mapped = vocab.translate(ids, Vocab("bd"))
    assert vocab.decode(mapped) == "bddb"
    assert Vocab("bd").translate(ids, Vocab("bd")) is ids


def test_train_and_resume_read_the_cached_ids(tmp_path, cache):
    path = corpus_file(tmp_path, PATTERN * 40)
    first = CliRunner().invoke(cli, ["train", str(path), "--preset", "lesson6", "--hidden", "8", "--max-steps", "4",
                                     "--sample-length", "5", "--out", str(tmp_path / "run"), "-q"])
    assert first.exit_code == 0, first.stderr
    written = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    resumed = CliRunner().invoke(cli, ["train", str(path), "--resume", str(tmp_path / "run" / "latest.npz"),
                                       "--max-steps", "8", "-q"])
    assert resumed.exit_code == 0, resumed.stderr
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == written  # the second run only read it
    assert checkpoint.load(tmp_path / "run" / "latest.npz")[1]["step"] == 8
    assert os.listdir(path.parent) == ["c.txt"]
