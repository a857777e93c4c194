"""How `predict` chooses a continuation: drawn (temperature, top-k, top-p) or by beam search,
ending at the first stop string; which of those options go together."""
from dataclasses import dataclass

from charrnn.beam import BeamConfig, beam_search
from charrnn.corpus import CorpusError, read_text
from charrnn.sample import until_stop


class DecodingError(ValueError):
    """Options that do not go together; the message says which."""


class SeedError(DecodingError):
    """A seed that cannot be read: empty, or with characters the vocabulary lacks. `option` names
    where it came from (--seed, --seed-file)."""

    def __init__(self, message, option):
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class Decoding:
    temperature: float | None = None  # None: 1, or for a beam 0; 0 takes the argmax
    top_k: int | None = None  # draw among the K most likely characters only
    top_p: float | None = None  # ... and the smallest set of them whose probability reaches P
    beam: int | None = None  # beam search of this width instead of drawing
    length_penalty: float | None = None  # GNMT's alpha for beams that stop at different lengths
    stops: tuple = ()  # end the continuation once it ends with one of these
    stop_drop: bool = False  # and leave the stop text out

    def check(self):
        """DecodingError for options that do not go together."""
        if any(stop == "" for stop in self.stops):
            raise DecodingError("a stop text cannot be empty (--stop)")
        if self.beam is None:
            if self.length_penalty is not None:
                raise DecodingError("--length-penalty scores beams: use it with --beam")
            return
        if self.temperature:
            raise DecodingError("--beam searches deterministically: drop --temperature (or give 0)")
        for name in ("top_k", "top_p"):
            if getattr(self, name) is not None:
                raise DecodingError(f"--beam searches deterministically: drop --{name.replace('_', '-')}")


def continuation(sampler, vocab, seed_ids, length, rng_seed, decoding, extra_stops=()):
    """The continuation's text in pieces, as they come: drawn, or the best beam when it is found;
    ending at the first stop (of decoding.stops, and of `extra_stops`, which are always dropped)."""
    d = decoding
    if d.beam:
        ids = [vocab.encode(s) for s in (*d.stops, *extra_stops) if not vocab.missing(s)]  # others never come
        config = BeamConfig(width=d.beam, alpha=d.length_penalty or 0.0, stops=tuple(map(tuple, ids)))
        pieces = [vocab.decode(beam_search(sampler, seed_ids, length, config))]
    else:
        temperature = 1.0 if d.temperature is None else d.temperature
        pieces = map(vocab.decode, sampler.stream(seed_ids, length, temperature, rng_seed, d.top_k, d.top_p))
    pieces = until_stop(pieces, d.stops, d.stop_drop) if d.stops else pieces
    return until_stop(pieces, extra_stops, drop=True) if extra_stops else pieces


def encode_seed(vocab, seed, unknown, option="--seed"):
    """The ids of `seed`; with `unknown` "skip", characters the vocabulary lacks are dropped, else refused."""
    missing = vocab.missing(seed)
    if missing and unknown == "skip":
        seed = vocab.known(seed)
    elif missing:
        shown = " ".join(repr(c) for c in missing)
        raise SeedError(f"characters not in the checkpoint's vocabulary: {shown} (--unknown skip drops them)", option)
    if not seed:
        raise SeedError("the seed is empty; give at least one character", option)
    return vocab.encode(seed)


def first_line(text, vocab, seed, length, rng_seed, unknown):
    """The continuation of one seed line (`text` is `continuation` with its sampler, vocabulary and
    decoding given), up to `length` characters, a stop or its first newline."""
    if not (vocab.known(seed) if unknown == "skip" else seed):
        return ""  # nothing to continue from
    return "".join(text(encode_seed(vocab, seed, unknown), length, rng_seed, extra_stops=["\n"]))


def seed_source(seed, seed_file, each_line):
    """The option the seed comes from (--seed or --seed-file); DecodingError for a choice that does not go together."""
    if (seed is None) == (seed_file is None):
        raise DecodingError("give the text to start from with --seed or --seed-file (one of them)")
    if each_line and seed not in ("-", None):
        raise DecodingError("--each-line reads its seeds from stdin or a file: use it with --seed - or --seed-file")
    return "--seed-file" if seed_file else "--seed"


def read_seed_file(path, encoding):
    """The text of --seed-file; a CorpusError that names the option."""
    try:
        return read_text(path, encoding)
    except CorpusError as e:
        raise CorpusError(f"--seed-file: {e}") from None
