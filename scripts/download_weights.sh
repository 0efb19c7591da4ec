#!/usr/bin/env bash
# Download the real checkpoints into DIR (default ./weights) in the layout `restyle models build --weights DIR`
# reads. Needs internet and `pip install huggingface_hub`; not run in CI or on the build machine (no hub there).
set -euo pipefail
DIR=${1:-weights}
mkdir -p "$DIR/yolo" "$DIR/sam2"
hf() { huggingface-cli download "$1" --local-dir "$DIR/$2" "${@:3}"; }
hf stable-diffusion-v1-5/stable-diffusion-v1-5 stable-diffusion-v1-5 --exclude "*.ckpt" "*non_ema*" "*.bin" "safety_checker/*"
hf lllyasviel/control_v11f1p_sd15_depth control_v11f1p_sd15_depth --exclude "*.bin"
hf lllyasviel/control_v11p_sd15_canny control_v11p_sd15_canny --exclude "*.bin"
hf Intel/dpt-large dpt-large
hf openai/clip-vit-base-patch32 clip-vit-base-patch32 --exclude "*.h5" "*.msgpack"
hf facebook/sam2.1-hiera-tiny sam2 --include "sam2.1_hiera_tiny.pt"
curl -fL -o "$DIR/yolo/yolov8n.pt" https://github.com/ultralytics/assets/releases/download/v8.3.0/yolov8n.pt
echo "weights in $DIR: now run  restyle models build --profile t4 --weights $DIR"
