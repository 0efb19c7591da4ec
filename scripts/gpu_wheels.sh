#!/usr/bin/env bash
# The wheels `restyle bench gpu` needs on a GPU host that has torch, transformers, accelerate,
# safetensors and peft but no diffusers and no network: this package, diffusers (the version
# in .venv) and the pure-Python pieces the `restyle` command imports. Python 3.12 wheels.
#   scripts/gpu_wheels.sh [DIR]        (default out/gpu-wheels, ~43 MiB; at most 64 MiB may travel)
# On the GPU host: scripts/gpu_bench.sh [DIR] [restyle bench gpu options...]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-out/gpu-wheels}
py=${PYTHON:-.venv/bin/python}
rm -rf "$dir"
mkdir -p "$dir"
"$py" -m pip wheel -q --no-deps --no-build-isolation -w "$dir" .
diffusers=$("$py" -c 'import diffusers; print(diffusers.__version__)')
hub=$("$py" -c 'import huggingface_hub; print(huggingface_hub.__version__)')
# Each with its whole dependency closure (not --no-deps: importlib-metadata 10 needs lazy-importer,
# transformers 5 no longer brings Pillow or requests, and the host's set is not known here); pip on
# the host installs only what it lacks. Versions as tested in .venv.
"$py" -m pip download -q --python-version 3.12 --only-binary=:all: -d "$dir" \
  "diffusers==$diffusers" "huggingface-hub==$hub" typer rich pydantic-settings
du -sh "$dir"
