#!/usr/bin/env bash
# The wheels `restyle bench gpu` needs on a GPU host that has torch, transformers, accelerate,
# safetensors and peft but no diffusers and no network: this package, diffusers (the version
# in .venv) and the pure-Python pieces the `restyle` command imports. Python 3.12 wheels.
#   scripts/gpu_wheels.sh [DIR]        (default out/gpu-wheels, ~52 MiB; at most 64 MiB may travel)
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
# The memory figures (export/gpu_memory.py) also build SAM2 and YOLOv8n. sam2 is an sdist: built
# here without its optional CUDA extension (pure Python) and retagged for any Python; hydra's antlr4
# runtime and the iopath sam2 asks for are sdists too. torchvision pairs with the hosts' torch (2.11 -> 0.26.0; --no-deps, so no
# torch travels). ultralytics goes --no-deps: building and running a model needs none of its plotting
# and data-frame dependencies (matplotlib, polars, scipy), which would not fit.
version() { "$py" -c "import importlib.metadata as m; print(m.version('$1'))"; }
SAM2_BUILD_CUDA=0 "$py" -m pip wheel -q --no-deps --no-build-isolation -w "$dir" \
  "sam2==$(version sam2)" "antlr4-python3-runtime==4.9.3" "iopath==$(version iopath)"
"$py" -m wheel tags --remove --python-tag py3 --abi-tag none --platform-tag any "$dir"/sam2-*.whl >/dev/null
get="$py -m pip download -q --python-version 3.12 --only-binary=:all: -d $dir --find-links $dir"
$get hydra-core "iopath==$(version iopath)"
$get --no-deps "torchvision==${HOST_TORCHVISION:-0.26.0}" "ultralytics==$(version ultralytics)" ultralytics-thop psutil
du -sh "$dir"
