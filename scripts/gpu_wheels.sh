#!/usr/bin/env bash
# The wheels `restyle bench gpu` needs on a GPU host that has torch, transformers, accelerate,
# safetensors and peft but no diffusers and no network: this package, diffusers (the version
# in .venv) and the pure-Python pieces the `restyle` command imports. Python 3.12 wheels.
#   scripts/gpu_wheels.sh [DIR]        (default out/gpu-wheels, ~26 MiB; at most 64 MiB may travel)
# On the GPU host: scripts/gpu_bench.sh [DIR] [restyle bench gpu options...]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-out/gpu-wheels}
py=${PYTHON:-.venv/bin/python}
rm -rf "$dir"
mkdir -p "$dir"
"$py" -m pip wheel -q --no-deps --no-build-isolation -w "$dir" .
diffusers=$("$py" -c 'import diffusers; print(diffusers.__version__)')
get="$py -m pip download -q --python-version 3.12 --only-binary=:all: -d $dir"
$get --no-deps "diffusers==$diffusers" importlib-metadata zipp  # filelock, numpy, regex, safetensors come with transformers
$get Pillow requests  # diffusers needs both; transformers 5 brings neither
hub=$("$py" -c 'import huggingface_hub; print(huggingface_hub.__version__)')
$get "huggingface-hub==$hub"  # in case the host's is older than diffusers asks (pip keeps a new enough one)
$get typer rich pydantic-settings  # with their (small, pure-Python but pydantic-core) deps
du -sh "$dir"
