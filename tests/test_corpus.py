import codecs
import io

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from charrnn import corpus
from charrnn.corpus import BatchStream, CorpusError, Vocab, decode, decode_pieces, id_counts, read_text, split


def test_vocab_round_trip_with_non_ascii():
    text = "Ünïcödé: naïve café, 日本語 and 🙂\r\n"
    vocab = Vocab.from_text(text)
    assert list(vocab.chars) == sorted(set(text))
    assert "🙂" in vocab.chars and len(vocab) == len(set(text))  # an emoji is one code point
    ids = vocab.encode(text)
    assert ids.dtype == np.uint8 and len(ids) == len(text)
    assert vocab.decode(ids) == text
    assert Vocab.from_json(vocab.to_json()) == vocab


def test_ids_use_the_smallest_unsigned_dtype():
    assert Vocab("ab").dtype == np.uint8
    assert Vocab([chr(i) for i in range(256)]).dtype == np.uint8
    assert Vocab([chr(i) for i in range(257)]).dtype == np.uint16
    many = Vocab([chr(i) for i in range(0xE000, 0xE000 + 70000)])  # private use + beyond, all distinct
    assert many.dtype == np.uint32
    text = "".join(many.chars[i] for i in (0, 65535, 69999))
    assert many.decode(many.encode(text)) == text


def test_known_drops_characters_outside_the_vocabulary():
    assert Vocab("abc").known("abxcyz") == "abc"
    assert Vocab("abc").known("cab") == "cab"


def test_encode_names_missing_characters():
    with pytest.raises(KeyError) as e:
        Vocab("abc").encode("abxyz")
    assert e.value.args[0] == ["x", "y", "z"]
    with pytest.raises(KeyError) as e:  # the last id of a full uint8 vocabulary is not a missing mark
        Vocab([chr(i) for i in range(256)]).encode("\xff\u0100")
    assert e.value.args[0] == ["\u0100"]


def test_encode_and_counts_a_chunk_at_a_time_equal_one_pass(monkeypatch):
    text = "Ünïcödé 🙂 and ASCII\r\n" * 7
    vocab = Vocab.from_text(text)
    whole = vocab.encode(text)
    monkeypatch.setattr(corpus, "CHUNK", 3)
    np.testing.assert_array_equal(vocab.encode(text), whole)
    np.testing.assert_array_equal(id_counts(whole, len(vocab)), np.bincount(whole, minlength=len(vocab)))
    with pytest.raises(KeyError) as e:
        vocab.encode(text + "xyz")  # missing only in the last chunk
    assert e.value.args[0] == ["x", "y", "z"]


def test_batch_stream_with_one_stream_is_the_lessons_chunks():
    ids = np.arange(20, dtype=np.uint8)
    stream = BatchStream(ids, batch_size=1, seq_len=8)
    assert len(stream) == 3  # 19 pairs: two full chunks and a padded one
    x, y, w = stream.batch(0)
    np.testing.assert_array_equal(x[:, 0], range(0, 8))
    np.testing.assert_array_equal(y[:, 0], range(1, 9))
    x, y, w = stream.batch(2)
    np.testing.assert_array_equal(w[:, 0], [1, 1, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(x[:3, 0], [16, 17, 18])
    np.testing.assert_array_equal(y[:3, 0], [17, 18, 19])
    assert x.dtype == np.int32 and w.dtype == np.float32


@pytest.mark.parametrize("n,batch_size,seq_len", [(1000, 7, 10), (641, 8, 10), (50, 1, 7), (1001, 10, 10)])
def test_batches_without_padding_are_the_indexed_ones(n, batch_size, seq_len):
    """The strided views batch() reads a batch with no padding through give what indexing every
    position (the padded batch's way) gives, for every batch of the pass."""
    ids = np.random.default_rng(n).integers(0, 200, n).astype(np.uint8)
    stream = BatchStream(ids, batch_size, seq_len)
    for k in range(len(stream)):
        for fast, indexed in zip(stream.batch(k), stream._padded(k), strict=True):
            assert fast.dtype == indexed.dtype and fast.shape == indexed.shape
            np.testing.assert_array_equal(fast, indexed)


def test_batch_stream_reads_contiguous_streams_and_uses_every_character_once():
    ids = np.arange(1000, dtype=np.uint16)  # id == position, so positions can be checked directly
    stream = BatchStream(ids, batch_size=7, seq_len=10)
    xs, ys, ws = zip(*(stream.batch(k) for k in range(len(stream))))
    x, y, w = (np.concatenate(a, axis=0) for a in (xs, ys, ws))  # (steps * T, B): each column one stream
    real = w.astype(bool)
    np.testing.assert_array_equal(y[real], x[real] + 1)  # targets are the inputs shifted by one
    used = np.sort(x[real])
    np.testing.assert_array_equal(used, np.arange(999))  # every input character once per pass
    for b in range(7):  # each stream is one contiguous slice, continued from batch to batch
        column = x[real[:, b], b]
        np.testing.assert_array_equal(np.diff(column), 1)
    assert x[0, 1] == stream.stream_len  # stream 1 starts where stream 0's slice ends


def test_batch_stream_refuses_a_batch_too_large_for_the_text():
    with pytest.raises(CorpusError, match="needs at least 65"):
        BatchStream(np.arange(50), batch_size=8, seq_len=8)


def test_validation_part_is_the_tail_and_never_in_training_batches():
    ids = np.arange(1000, dtype=np.uint16)
    train, val = split(ids, 0.05)
    assert len(val) == 50 and val[0] == 950 and len(train) + len(val) == 1000
    stream = BatchStream(train, batch_size=4, seq_len=16)
    seen = set()
    for k in range(len(stream)):
        x, y, w = stream.batch(k)
        seen.update(x[w > 0].tolist() + y[w > 0].tolist())
    assert seen == set(range(950))
    assert split(ids, 0.0)[1].size == 0


def test_decode_reports_the_offset_of_a_bad_byte():
    with pytest.raises(CorpusError, match=r"byte 0xff at offset 3 is not valid utf-8"):
        decode(b"abc\xffdef", "utf-8", "x.txt")
    assert decode(b"abc\xffdef", "latin-1", "x.txt") == "abc\xffdef"


def test_decode_strips_bom_keeps_crlf_and_refuses_binary_and_empty():
    assert decode("\ufeffa\r\nb".encode("utf-8"), "utf-8", "x") == "a\r\nb"
    with pytest.raises(CorpusError, match="binary"):
        decode(b"ab\x00c", "utf-8", "x")
    with pytest.raises(CorpusError, match="empty"):
        decode(b" \n\t ", "utf-8", "x")
    with pytest.raises(CorpusError, match="unknown encoding"):
        decode(b"ab", "no-such-codec", "x")


def test_decode_pieces_join_to_the_one_shot_decoding():
    raw = "\ufeffÜnïcödé 🙂\r\n日本語".encode("utf-8")
    for chunk in (1, 2, 3, 5, len(raw)):
        pieces = list(decode_pieces(io.BytesIO(raw), "utf-8", "x", chunk))
        assert "".join(pieces) == raw.decode("utf-8")[1:] and all(pieces)


def test_read_text_from_a_file(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes("héllo\n".encode("utf-8"))
    assert read_text(path) == "héllo\n"
    with pytest.raises(CorpusError, match="cannot read"):
        read_text(tmp_path / "missing.txt")


# Property tests: arbitrary Unicode and arbitrary bytes instead of hand-picked cases.
SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
ASTRAL = st.characters(min_codepoint=0x10000)
TEXT = st.text(st.one_of(st.characters(codec="utf-8"), ASTRAL), min_size=1)  # any character, often beyond U+FFFF


@given(text=TEXT)
def test_vocab_round_trips_any_text(text):
    vocab = Vocab.from_text(text)
    ids = vocab.encode(text)
    assert vocab.decode(ids) == text and len(ids) == len(text)
    assert ids.dtype == np.min_scalar_type(len(set(text)) - 1)
    assert Vocab.from_json(vocab.to_json()) == vocab and list(vocab.chars) == sorted(set(text))


@given(text=TEXT, surrogate=SURROGATES, where=st.floats(0, 1))
def test_a_lone_surrogate_is_refused_cleanly(text, surrogate, where):
    cut = int(where * len(text))
    bad = text[:cut] + surrogate + text[cut:]
    with pytest.raises(CorpusError, match=f"^U\\+{ord(surrogate):04X} is a lone surrogate, not a character"):
        Vocab.from_text(bad)
    with pytest.raises(KeyError) as e:  # a vocabulary never holds one, so encoding names it as missing
        Vocab.from_text(text).encode(bad)
    assert surrogate in e.value.args[0]


def test_decoders_that_yield_lone_surrogates_are_refused_with_the_offset():
    with pytest.raises(CorpusError, match=r"x: U\+D800 at offset 2 is a lone surrogate, not a character; pass --encoding"):
        decode(b"ab+2AA-cd", "utf-7", "x")
    with pytest.raises(CorpusError, match=r"x: U\+DFFF at offset 3 is a lone surrogate"):
        decode(b"abc\\udfffcd", "unicode_escape", "x")


ENCODINGS = ["utf-8", "utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252", "ascii", "shift_jis", "utf-7"]


def expected_decoding(raw, encoding):
    """What decode must do, from Python's one-shot decoding: the text, or the start of the error message."""
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        return None, f"x: byte 0x{raw[e.start]:02x} at offset {e.start} is not valid {encoding}; "
    text = text.removeprefix("\ufeff")
    surrogate = SURROGATE_RE.search(text)
    if "\x00" in text and (surrogate is None or text.index("\x00") < surrogate.start()):
        return None, f"x: NUL character at offset {text.index(chr(0))}; "
    if surrogate:
        return None, f"x: U+{ord(surrogate.group()):04X} at offset {surrogate.start()} is a lone surrogate"
    if not text.strip():
        return None, "x is empty (or only whitespace)"
    return text, None


SURROGATE_RE = corpus.SURROGATE


@settings(max_examples=300)
@given(raw=st.binary(max_size=64), encoding=st.sampled_from(ENCODINGS), chunk=st.integers(1, 9))
def test_any_bytes_decode_to_the_text_or_one_line_naming_the_offset(raw, encoding, chunk):
    text, message = expected_decoding(raw, encoding)
    try:
        got = "".join(decode_pieces(io.BytesIO(raw), encoding, "x", chunk))
    except CorpusError as e:
        if "does not start with BOM" in str(e):  # read a piece at a time, utf-16 and utf-32 need the mark
            bom = {"utf-16": codecs.BOM_UTF16_LE, "utf-32": codecs.BOM_UTF32_LE}[encoding]
            assert raw[: len(bom)] not in (bom, bom[::-1]) and str(e).startswith(f"x is not valid {encoding}: ")
            return
        assert message is not None and str(e).startswith(message) and "\n" not in str(e), (str(e), message)
    else:
        assert got == text, message
