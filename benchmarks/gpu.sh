#!/usr/bin/env bash
# cnntune's GPU benchmark, for a machine with one NVIDIA GPU, no network and no package registry.
#
#   benchmarks/gpu.sh WHEELS_DIR [TABLE_FILE]
#
# WHEELS_DIR holds the wheels of keras, keras-tuner, optuna and what they need beyond the machine's own Python
# packages (fetch them on a connected machine: BENCHMARKS.md, "GPU"). They are installed with
# `pip install --no-index --no-deps --target` into a fresh folder, so nothing of the machine's changes. The backend is
# the first of jax, torch, tensorflow that imports (KERAS_BACKEND set beforehand wins). Then benchmarks/gpu_bench.py
# measures training throughput and a K-trials-per-GPU search, prints one table and writes it to TABLE_FILE
# (default gpu-benchmark.md). Extra arguments after TABLE_FILE go to gpu_bench.py (e.g. --smoke).
set -euo pipefail

wheels=${1:?usage: benchmarks/gpu.sh WHEELS_DIR [TABLE_FILE] [gpu_bench.py options]}
table=${2:-gpu-benchmark.md}
shift $(( $# >= 2 ? 2 : 1 ))
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}

target=$(mktemp -d)/site-packages
mkdir -p "$target"
shopt -s nullglob
wheel_files=("$wheels"/*.whl)
if (( ${#wheel_files[@]} == 0 )); then
    echo "error: no .whl files in $wheels" >&2
    exit 2
fi
# keras, keras-tuner and optuna always; any other wheel only when the machine lacks that package (its own numpy,
# jax or torch stay as they are).
mapfile -t install < <("$python" - "${wheel_files[@]}" <<'PY'
import sys
from importlib import metadata

ALWAYS = {"keras", "keras_tuner", "optuna"}
for path in sys.argv[1:]:
    name = path.rsplit("/", 1)[-1].split("-")[0].lower().replace("-", "_")
    try:
        metadata.distribution(name)
        have = True
    except metadata.PackageNotFoundError:
        have = False
    if name in ALWAYS or not have:
        print(path)
PY
)
"$python" -m pip install --quiet --no-index --no-deps --target "$target" "${install[@]}"
export PYTHONPATH="$target:$repo${PYTHONPATH:+:$PYTHONPATH}"

if [[ -z "${KERAS_BACKEND:-}" ]]; then
    for candidate in jax torch tensorflow; do
        if "$python" -c "import $candidate" 2>/dev/null; then
            export KERAS_BACKEND=$candidate
            break
        fi
    done
fi
if [[ -z "${KERAS_BACKEND:-}" ]]; then
    echo "error: none of jax, torch, tensorflow imports with $python" >&2
    exit 2
fi
echo "backend: $KERAS_BACKEND; packages from $wheels installed into $target"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
cd "$repo"
exec "$python" benchmarks/gpu_bench.py --out "$table" "$@"
