"""Build the vision artifacts (detection, depth, segmentation, room classifier).

Each builder is `(out_dir, *, weights, size, seed) -> dict` and returns its manifest entry
(export/build.py files it under the stage name). Three sources, one code path downstream:
  weights=<dir>          real checkpoints from a local folder (export/weights.py)
  weights=None, "full"   full-size architectures with random weights (speed runs only)
  weights=None, "tiny"   tiny random configs of the same architectures (tests, CI, demo)

Random builds call torch.manual_seed(seed) right before creating the model, so building
twice gives the same bytes (the ultralytics ONNX export date is pinned for the same reason).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import torch

from export.weights import CLIP, DPT, SAM2, YOLO, Part

# ultralytics checks for updates, fetches fonts and pip-installs missing requirements when
# it thinks it is online; none of that may happen in a build.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "False")

ONNX_OPSET = 17  # runs on onnxruntime 1.32 and TensorRT 8.6+/10 (the T4 host)
YOLO_ARCH = "yolov8n"
YOLO_IMGSZ = {"tiny": 320, "full": 640}
DEPTH_SIZE = {"tiny": 96, "full": 384}
CLIP_TINY_IMAGE = 32


def _check_size(size: str) -> None:
    if size not in ("tiny", "full"):
        raise ValueError(f"size must be 'tiny' or 'full', got {size!r}")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _checkpoint(weights: Path, part: Part) -> Path:
    """The part's one file (yolo, sam2) or its save_pretrained folder (dpt, clip) under `weights`."""
    path = part.path(weights) / part.files[0] if len(part.files) == 1 else part.path(weights)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: see the weights layout in export/weights.py")
    return path


def _link_or_copy(src: str, dst: str) -> None:
    # Hard links keep multi-GB checkpoints from being duplicated on the same disk.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _place(src: Path, dst: Path) -> None:
    if dst.exists() or dst.is_symlink():
        shutil.rmtree(dst) if dst.is_dir() and not dst.is_symlink() else dst.unlink()
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, copy_function=_link_or_copy)
    else:
        _link_or_copy(str(src), str(dst))


# ---------------------------------------------------------------- detection (YOLOv8)

def load_yolo(*, weights: Path | None, seed: int, checkpoint: Path | None = None):
    """The ultralytics YOLO object a build exports (also what parity tests compare against):
    from `checkpoint`, else <weights>/yolo/yolov8n.pt, else random from yolov8n.yaml."""
    from ultralytics import YOLO

    from restyle.detection import COCO_CLASSES

    if checkpoint is None and weights is not None:
        checkpoint = _checkpoint(weights, YOLO)
    if checkpoint is not None:
        return YOLO(str(checkpoint))
    torch.manual_seed(seed)
    model = YOLO(f"{YOLO_ARCH}.yaml")
    model.model.names = dict(enumerate(COCO_CLASSES))  # else the ONNX metadata says '0'..'79'
    return model


def build_detection(out_dir: Path, *, weights: Path | None, size: str, seed: int) -> dict:
    """YOLOv8n -> out_dir/detection/model.onnx (input `images` [batch,3,S,S], output `output0`
    [batch,84,A]; only the batch axis is dynamic).

    S = 320 tiny / 640 full. Weights: <weights>/yolo/yolov8n.pt; else random from yolov8n.yaml.
    """
    import onnx
    import onnxslim

    _check_size(size)
    imgsz = YOLO_IMGSZ[size]
    dst = Path(out_dir) / "detection" / "model.onnx"
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        # ultralytics writes the .onnx next to the .pt (or into the cwd for a yaml model):
        # work on a copy so the weights folder (maybe read-only) and the caller's cwd stay clean.
        if weights is not None:
            src = _checkpoint(weights, YOLO)
            shutil.copy2(src, Path(tmp) / src.name)
            model = load_yolo(weights=None, seed=seed, checkpoint=Path(tmp) / src.name)
        else:
            model = load_yolo(weights=None, seed=seed)
        # ultralytics' dynamic=True frees height and width as well as the batch; pinned again
        # below, so TensorRT builds for one image size and only the batch varies.
        exported = model.export(format="onnx", imgsz=imgsz, opset=ONNX_OPSET, simplify=True,
                                dynamic=True, batch=1, device="cpu", verbose=False)
        graph = onnx.load(exported)
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value = dims[3].dim_value = imgsz
    graph.graph.output[0].type.tensor_type.ClearField("shape")
    # Slimming again with H/W fixed folds the anchor grid (computed at run time in a dynamic
    # export) back to constants, as in a static one, and infers output0 as [batch,84,A].
    graph = onnxslim.slim(graph)
    onnx.checker.check_model(graph)
    for prop in graph.metadata_props:
        if prop.key == "date":
            prop.value = "1970-01-01T00:00:00+00:00"
    onnx.save(graph, dst)
    return {
        "architecture": YOLO_ARCH,
        "source": str(_checkpoint(weights, YOLO)) if weights else f"random:{YOLO_ARCH}.yaml",
        "seed": None if weights else seed,
        "file": "detection/model.onnx",
        "imgsz": imgsz,
        "input": "images", "output": "output0", "opset": ONNX_OPSET,
        "sha256": _sha256(dst),
    }


# ---------------------------------------------------------------- depth (DPT)

class NormalisedDepth(torch.nn.Module):
    """DPT whose output is min-max normalised per image: [B,S,S] in [0,1], near = 1.

    Per image (over the last two axes), so an image's map does not depend on the others
    that share its batch.
    """

    def __init__(self, dpt: torch.nn.Module):
        super().__init__()
        self.dpt = dpt

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        d = self.dpt(pixel_values=pixel_values).predicted_depth
        lo = d.amin(dim=(-2, -1), keepdim=True)
        hi = d.amax(dim=(-2, -1), keepdim=True)
        # The eps only guards a perfectly flat map (zeros, not NaN): random-weight DPTs
        # predict values around 1e-8, so anything coarser would flatten them.
        return (d - lo) / (hi - lo).clamp_min(1e-20)


def dpt_config(size: str):
    from transformers import DPTConfig

    if size == "tiny":
        return DPTConfig(
            hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
            image_size=DEPTH_SIZE["tiny"], patch_size=16, backbone_out_indices=[0, 1, 2, 3],
            neck_hidden_sizes=[16, 32, 64, 64], fusion_hidden_size=32, head_in_index=-1,
            is_hybrid=False)
    # Intel/dpt-large
    return DPTConfig(
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
        image_size=384, patch_size=16, backbone_out_indices=[5, 11, 17, 23],
        neck_hidden_sizes=[256, 512, 1024, 1024], fusion_hidden_size=256, is_hybrid=False)


def load_depth(*, weights: Path | None, size: str, seed: int) -> tuple[NormalisedDepth, int]:
    """The wrapped DPT (eval) and its input size S."""
    from transformers import DPTForDepthEstimation

    if weights is not None:
        dpt = DPTForDepthEstimation.from_pretrained(_checkpoint(weights, DPT), local_files_only=True)
        s = dpt.config.image_size
    else:
        config = dpt_config(size)
        torch.manual_seed(seed)
        dpt = DPTForDepthEstimation(config)
        s = config.image_size
    return NormalisedDepth(dpt.float().eval()), int(s)


def build_depth(out_dir: Path, *, weights: Path | None, size: str, seed: int) -> dict:
    """DPT -> out_dir/depth/model.onnx (input `pixel_values` [batch,3,S,S], output `depth`
    [batch,S,S]; only the batch axis is dynamic).

    S = 96 tiny / 384 full. Weights: <weights>/dpt-large/; else a random DPT config.
    """
    import onnx

    _check_size(size)
    model, s = load_depth(weights=weights, size=size, seed=seed)
    dst = Path(out_dir) / "depth" / "model.onnx"
    dst.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, 3, s, s)
    with torch.no_grad():
        torch.onnx.export(model, (example,), str(dst), input_names=["pixel_values"],
                          output_names=["depth"], opset_version=ONNX_OPSET, dynamo=False,
                          do_constant_folding=True,
                          dynamic_axes={"pixel_values": {0: "batch"}, "depth": {0: "batch"}})
    # The tracer leaves the min-max output's H/W symbolic; Triton's config and TensorRT want
    # them fixed, and they are S by construction.
    graph = onnx.load(dst)
    dims = graph.graph.output[0].type.tensor_type.shape.dim
    dims[1].dim_value = dims[2].dim_value = s
    onnx.checker.check_model(graph)
    onnx.save(graph, dst)
    return {
        "architecture": "dpt-large" if (weights or size == "full") else "dpt-tiny",
        "source": str(_checkpoint(weights, DPT)) if weights else f"random:dpt-{size}",
        "seed": None if weights else seed,
        "file": "depth/model.onnx",
        "image_size": s,
        "input": "pixel_values", "output": "depth", "opset": ONNX_OPSET,
        "sha256": _sha256(dst),
    }


# ---------------------------------------------------------------- segmentation (SAM2.1)

def build_segmentation(out_dir: Path, *, weights: Path | None, size: str, seed: int) -> dict:
    """SAM2.1 -> out_dir/segmentation/sam2.pt ({"model": state_dict}, what build_sam2 loads).

    hiera-tiny in both sizes (see restyle.segmentation). Weights: <weights>/sam2/sam2.1_hiera_tiny.pt.
    """
    from restyle.segmentation import SAM2_TINY_CONFIG as config

    _check_size(size)
    dst = Path(out_dir) / "segmentation" / "sam2.pt"
    dst.parent.mkdir(parents=True, exist_ok=True)
    if weights is not None:
        src = _checkpoint(weights, SAM2)
        _place(src, dst)
    else:
        from sam2.build_sam import build_sam2

        torch.manual_seed(seed)
        model = build_sam2(config, ckpt_path=None, device="cpu", mode="eval")
        torch.save({"model": model.state_dict()}, dst)
        src = None
    return {
        "architecture": Path(config).stem,
        "config": config,
        "source": str(src) if src else f"random:{config}",
        "seed": None if weights else seed,
        "file": "segmentation/sam2.pt",
        "sha256": _sha256(dst),
    }


# ---------------------------------------------------------------- room classifier (CLIP)

def clip_config(size: str, vocab_size: int, eos_id: int, bos_id: int):
    from transformers import CLIPConfig

    special = dict(vocab_size=vocab_size, eos_token_id=eos_id, bos_token_id=bos_id, pad_token_id=eos_id)
    if size == "tiny":
        return CLIPConfig(
            text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=2, max_position_embeddings=77, **special),
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=2, image_size=CLIP_TINY_IMAGE, patch_size=8),
            projection_dim=32)
    # openai/clip-vit-base-patch32 (CLIPConfig defaults), text vocab from the tokenizer used
    return CLIPConfig(text_config=special, vision_config=dict(image_size=224, patch_size=32),
                      projection_dim=512)


def build_room_classifier(out_dir: Path, *, weights: Path | None, size: str, seed: int) -> dict:
    """CLIP -> out_dir/room_classifier/ (CLIPModel + CLIPProcessor, save_pretrained).

    Weights: <weights>/clip-vit-base-patch32/. Random builds (tiny, and full-size ViT-B/32 for
    speed runs) use the tiny character-level tokenizer: random weights make text quality moot.
    """
    from transformers import CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    from export.tokenizer import write_tiny_clip_tokenizer

    _check_size(size)
    dst = Path(out_dir) / "room_classifier"
    if weights is not None:
        src = _checkpoint(weights, CLIP)
        _place(src, dst)
        return {"architecture": "clip-vit-base-patch32", "source": str(src), "seed": None,
                "dir": "room_classifier"}
    if dst.exists():
        shutil.rmtree(dst)
    with tempfile.TemporaryDirectory() as tmp:
        vocab_size = write_tiny_clip_tokenizer(Path(tmp))
        tokenizer = CLIPTokenizer.from_pretrained(tmp)
    config = clip_config(size, vocab_size, tokenizer.eos_token_id, tokenizer.bos_token_id)
    image_size = config.vision_config.image_size
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": image_size},
                                           crop_size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer)
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    model.save_pretrained(dst)
    processor.save_pretrained(dst)
    return {
        "architecture": "clip-tiny" if size == "tiny" else "clip-vit-base-patch32",
        "source": f"random:clip-{size}", "seed": seed, "dir": "room_classifier",
        "image_size": image_size, "vocab_size": vocab_size,
        "tokenizer": "tiny character-level (export.tokenizer)",
    }
