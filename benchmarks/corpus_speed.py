"""Reading and encoding a large corpus through the cache of encoded corpora, cold (a first run:
decode, count, encode, write) and cached (a later run: open the memory map), against reading and
decoding the same bytes in one go (Path.read_bytes + bytes.decode) measured in the same run.

The corpus is CORPUS repeated to about --mb megabytes in a temporary directory, encoded into a
temporary cache directory, so neither the repository nor the user's cache is touched. The file
stays in the page cache throughout: "cold" is a first run of charrnn, not a cold disk.

    python benchmarks/corpus_speed.py [CORPUS] [--mb 100] [--rounds 3]

Not part of the test suite.
"""
import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from charrnn import idcache
from charrnn.corpus import id_counts

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def build_corpus(source, megabytes, directory):
    """`source` repeated to at least `megabytes` MB in `directory`."""
    data = Path(source).read_bytes()
    path = Path(directory) / "big.txt"
    with open(path, "wb") as f:
        for _ in range(-(-megabytes * 10**6 // len(data))):
            f.write(data)
    return path


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", default=str(DEFAULT_CORPUS))
    parser.add_argument("--mb", type=int, default=100, help="size of the corpus built, in MB")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = build_corpus(args.corpus, args.mb, tmp)
        os.environ["CHARRNN_CACHE_DIR"] = str(Path(tmp) / "cache")
        mb = path.stat().st_size / 1e6
        times = {"read_bytes + decode": [], "cold": [], "cached": [], "cached + a pass over the ids": []}
        for _ in range(args.rounds):
            times["read_bytes + decode"].append(timed(lambda: path.read_bytes().decode("utf-8"))[0])
            shutil.rmtree(idcache.cache_dir(), ignore_errors=True)
            times["cold"].append(timed(lambda: idcache.corpus_ids(path, log=lambda message: None))[0])
            seconds, (vocab, ids) = timed(lambda: idcache.corpus_ids(path))
            times["cached"].append(seconds)
            times["cached + a pass over the ids"].append(seconds + timed(lambda: id_counts(ids, len(vocab)))[0])
            del ids
    ref = statistics.median(times["read_bytes + decode"])
    print(f"{mb:.1f} MB corpus ({len(vocab)} characters), median of {args.rounds} rounds")
    print(f"{'':30} {'seconds':>8} {'MB/s':>9} {'x reference':>12}")
    for name, values in times.items():
        seconds = statistics.median(values)
        print(f"{name:30} {seconds:8.3f} {mb / seconds:9,.0f} {ref / seconds:12.2f}")


if __name__ == "__main__":
    main()
