import numpy as np
import pytest

from charrnn.corpus import CorpusError, Vocab, as_column, decode, read_text, sequences


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


def test_encode_names_missing_characters():
    with pytest.raises(KeyError) as e:
        Vocab("abc").encode("abxyz")
    assert e.value.args[0] == ["x", "y", "z"]


def test_sequences_are_non_overlapping_shifted_chunks():
    ids = np.arange(20, dtype=np.uint8)
    inputs, targets = sequences(ids, 8)
    np.testing.assert_array_equal(inputs, [range(0, 8), range(8, 16)])
    np.testing.assert_array_equal(targets, [range(1, 9), range(9, 17)])
    assert np.shares_memory(inputs, ids)  # views, not copies
    np.testing.assert_array_equal(as_column(inputs[1]), np.arange(8, 16).reshape(8, 1))


def test_sequences_need_one_more_character_than_seq_len():
    assert len(sequences(np.arange(9), 8)[0]) == 1
    with pytest.raises(CorpusError, match="at least 9"):
        sequences(np.arange(8), 8)


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


def test_read_text_from_a_file(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes("héllo\n".encode("utf-8"))
    assert read_text(path) == "héllo\n"
    with pytest.raises(CorpusError, match="cannot read"):
        read_text(tmp_path / "missing.txt")
