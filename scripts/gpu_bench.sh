#!/usr/bin/env bash
# Run `restyle bench gpu` on a GPU host without network, from the wheels scripts/gpu_wheels.sh
# collected: what the host lacks comes from DIR (what it has is kept), this package without its
# serving dependencies (tritonserver, ultralytics, sam2: the benchmark does not import them).
#   scripts/gpu_bench.sh [DIR] [restyle bench gpu options...]     (DIR default out/gpu-wheels)
set -euo pipefail
dir=${1:-out/gpu-wheels}
shift || true
py=${PYTHON:-python3}
"$py" -m pip install -q --no-index --find-links "$dir" diffusers typer rich pydantic-settings sam2
"$py" -m pip install -q --no-index --find-links "$dir" --no-deps ultralytics ultralytics-thop psutil
"$py" -m pip install -q --no-index --no-deps --force-reinstall "$dir"/room_restyle-*.whl
"$py" -c 'from restyle_cli.main import app; app()' bench gpu "$@"
