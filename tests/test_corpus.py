import io

import numpy as np
import pytest

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
