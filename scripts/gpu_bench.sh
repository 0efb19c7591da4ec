#!/usr/bin/env bash
# Run `restyle bench gpu` on a GPU host without network, from the wheels scripts/gpu_wheels.sh
# collected: what the host lacks comes from DIR (what it has is kept), this package without its
# serving dependencies (tritonserver, ultralytics, sam2: the benchmark does not import them).
#   scripts/gpu_bench.sh [DIR] [restyle bench gpu options...]     (DIR default out/gpu-wheels)
set -euo pipefail
dir=${1:-out/gpu-wheels}
shift || true
py=${PYTHON:-python3}
# --upgrade: the CLI's own stack at least at the versions tested here (a host's older typer, with its
# newer click, cannot even build the command line); the rest of what the host has is kept.
"$py" -m pip install -q --no-index --find-links "$dir" --upgrade diffusers typer rich pydantic-settings
# Only the memory figures of segmentation and detection need these (torchvision pairs with one torch
# release): without them those two figures are reported as not measured, and the rest still runs.
"$py" -m pip install -q --no-index --find-links "$dir" sam2 ||
  echo "gpu_bench.sh: sam2 did not install (host torch $("$py" -c 'import torch; print(torch.__version__)')?):" \
       "segmentation's memory will not be measured" >&2
"$py" -m pip install -q --no-index --find-links "$dir" --no-deps ultralytics ultralytics-thop psutil ||
  echo "gpu_bench.sh: ultralytics did not install: detection's memory will not be measured" >&2
"$py" -m pip install -q --no-index --no-deps --force-reinstall "$dir"/room_restyle-*.whl
"$py" -c 'from restyle_cli.main import app; app()' bench gpu "$@"
