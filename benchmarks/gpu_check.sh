#!/usr/bin/env bash
# One-shot check of charrnn on a fresh machine with an NVIDIA GPU, in about five minutes:
#
#   1. installs charrnn with its GPU and benchmark extras (.[gpu,bench]), or, on a machine that
#      reaches no package index, from wheels carried in .whl/ beside the packages already there;
#   2. confirms JAX sees the GPU and prints it;
#   3. runs the tests that exercise the JAX backend, with the GPU as JAX's default device;
#   4. trains the default configuration and the LSTM 2x256 for 200 timed updates at batch 64 and
#      256, in float32 and bfloat16, each beside PyTorch's cuDNN layers on the same configuration
#      (float32, and under torch.autocast in bfloat16), and prints one table.
#
#   bash benchmarks/gpu_check.sh [CORPUS]      # CORPUS: tinyshakespeare.txt where it is at hand
#
# Without CORPUS it uses ../shared/data/tinyshakespeare.txt when present, else a corpus made from
# this checkout's own text files (a larger vocabulary than Shakespeare's: say so with the table).
# Not part of the test suite. The README's GPU section says what it printed, where and when.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false  # several JAX and PyTorch processes share the GPU
python=${PYTHON:-python3}
started=$SECONDS

echo "== install"
if [ -d .whl ]; then
    $python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=$PWD:/tmp/site
else
    $python -m pip install -q -e ".[gpu,bench,test]" || exit 1
fi
$python -c "import charrnn, pytensor, jax, torch; print('charrnn', charrnn.__version__, '| pytensor', \
pytensor.__version__, '| jax', jax.__version__, '| torch', torch.__version__)" || exit 1

echo "== devices"
$python -c "
import jax, torch
print('jax:', jax.devices(), '| torch cuda:', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')
assert jax.default_backend() == 'gpu', 'JAX does not see a GPU'
" || exit 1

corpus=${1:-../shared/data/tinyshakespeare.txt}
if [ ! -f "$corpus" ]; then
    corpus=/tmp/gpu-check-corpus.txt
    for _ in 1 2 3 4 5 6 7 8; do cat README.md benchmarks/README.md charrnn/*.py tests/*.py; done > "$corpus"
fi
echo "corpus: $corpus ($(wc -c < "$corpus") bytes)"

echo "== tests on the GPU (JAX backend)"
timeout 150 $python -m pytest -q -x -p no:cacheprovider -n 4 tests/test_model.py tests/test_bptt.py \
    tests/test_train.py tests/test_backends.py tests/test_precision.py 2>&1 | tail -15
echo "tests: exit ${PIPESTATUS[0]}, $((SECONDS - started)) s so far"

echo "== training speed: 2 rounds of 100 updates each, medians"
echo "| configuration | batch | charrnn precision | charrnn chars/s | PyTorch | PyTorch chars/s | ratio | charrnn first update s |"
echo "|---|---|---|---|---|---|---|---|"
for config in default lstm; do
    for batch in 64 256; do
        $python benchmarks/train_speed.py "$corpus" --configs $config --batch-size $batch --precision float32 \
            --torch-device cuda --updates 100 --rounds 2 --table
        $python benchmarks/train_speed.py "$corpus" --configs $config --batch-size $batch --precision bfloat16 \
            --torch-device cuda --torch-autocast --updates 100 --rounds 2 --table
    done
done
echo "done in $((SECONDS - started)) s"
