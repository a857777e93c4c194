import contextlib
import importlib.metadata
import io
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from numpy.lib import format as npformat

# Property tests are part of the suite, so they run the same examples every time, quickly: derandomized,
# no example database, no deadline (a shared machine's timing is not a failure).
settings.register_profile("charrnn", max_examples=100, derandomize=True, database=None, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("charrnn")



def pytest_report_header():
    """The versions this run tests (CI installs the newest pip resolves)."""
    return "charrnn on " + ", ".join(f"{name} {importlib.metadata.version(name)}"
                                     for name in ("pytensor", "jax", "jaxlib", "numpy", "numba", "click"))


PATTERN = "hello world! "
BOMB = (1 << 28,)  # float32 zeros: 1 GiB inflated, about 1 MB deflated


def write_bomb(zf, name, shape=BOMB):
    """A member of the zip `zf` with a valid .npy header for float32 zeros of `shape`, deflated as it is
    streamed: the test never holds the inflated bytes."""
    header = io.BytesIO()
    npformat.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    zeros, left = memoryview(bytes(16 << 20)), 4 * math.prod(shape)
    with zf.open(name, "w", force_zip64=True) as f:
        f.write(header.getvalue())
        while left:
            f.write(zeros[: min(left, len(zeros))])
            left -= min(left, len(zeros))


@contextlib.contextmanager
def tmpfs(mount, options):
    """A real tmpfs mounted at `mount` (created) with mount `options`, unmounted afterwards; the
    test is skipped where it cannot be mounted (it needs root, as on the development and CI machines)."""
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory):
    """Encoded corpora go to a temporary cache, for every test and the charrnn processes they start,
    never to the user's."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CHARRNN_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def charrnn_cmd():
    """The installed console script, or `python -m charrnn` when it is not on PATH."""
    script = shutil.which("charrnn")
    return [script] if script else [sys.executable, "-m", "charrnn"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A training text for the multi-device runs (test_devices, test_processes)."""
    path = tmp_path_factory.mktemp("corpus") / "c.txt"
    path.write_text(PATTERN * 60)  # 780 characters: 10 batches of 8 x 8 per epoch
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, charrnn_cmd):
    """A checkpoint trained by a real `charrnn train` process on a repetitive corpus."""
    out = tmp_path_factory.mktemp("run")
    corpus = out / "corpus.txt"
    corpus.write_text(PATTERN * 1000, encoding="utf-8")
    subprocess.run([*charrnn_cmd, "train", str(corpus), "--preset", "lesson6", "--hidden", "64", "--max-steps", "1500", "--out", str(out),
                    "--checkpoint-every", "1500", "--sample-length", "20", "--quiet"], check=True)
    return Path(out)
