"""The layout of the weights folder: what `restyle models download` fetches and
`restyle models build --weights DIR` reads, described once.

Each part is one hub repository (or one release URL) in one folder under DIR. `files` lists
the exact files taken from it, so nothing else is fetched (no .ckpt, no non-EMA or fp16
variants, no safety checker, no TF/Flax weights), and a part is complete when all of them
are there: downloads land under a temporary name and are renamed when whole, so a file that
exists is a finished one.

fp32 weights only: one folder serves both the cpu profile (fp32) and t4 (cast to fp16 at
load), and the hub's fp16 variants are rounded copies of the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Part:
    name: str  # the `--only` name; the two ControlNets share one
    folder: str  # under the weights folder
    files: tuple[str, ...]  # relative to the folder
    repo: str | None = None  # hub repository; None: `files[0]` comes from RESTYLE_YOLO_URL

    def path(self, root: Path) -> Path:
        return Path(root) / self.folder

    def missing(self, root: Path) -> list[str]:
        return [f for f in self.files if not (self.path(root) / f).is_file()]


_SD_MODEL = ("config.json", "diffusion_pytorch_model.safetensors")

SD = Part("sd", "stable-diffusion-v1-5", repo="stable-diffusion-v1-5/stable-diffusion-v1-5", files=(
    "model_index.json", "scheduler/scheduler_config.json", "feature_extractor/preprocessor_config.json",
    "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json",
    "tokenizer/special_tokens_map.json", "text_encoder/config.json", "text_encoder/model.safetensors",
    *(f"{sub}/{f}" for sub in ("unet", "vae") for f in _SD_MODEL)))
CONTROLNET_DEPTH = Part("controlnet", "control_v11f1p_sd15_depth", repo="lllyasviel/control_v11f1p_sd15_depth",
                        files=_SD_MODEL)
CONTROLNET_CANNY = Part("controlnet", "control_v11p_sd15_canny", repo="lllyasviel/control_v11p_sd15_canny",
                        files=_SD_MODEL)
DPT = Part("depth", "dpt-large", repo="Intel/dpt-large", files=("config.json", "preprocessor_config.json",
                                                                 "model.safetensors"))
# The one exception to safetensors: this repository's main branch has its PyTorch weights only
# as pytorch_model.bin (the safetensors conversion sits in an unmerged hub PR); transformers
# reads it with torch.load(weights_only=True), which runs no pickled code.
CLIP = Part("clip", "clip-vit-base-patch32", repo="openai/clip-vit-base-patch32", files=(
    "config.json", "preprocessor_config.json", "vocab.json", "merges.txt", "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json", "pytorch_model.bin"))
# SAM2's own checkpoint format (what sam2.build_sam loads); the repository has no other.
SAM2 = Part("sam2", "sam2", repo="facebook/sam2.1-hiera-tiny", files=("sam2.1_hiera_tiny.pt",))
YOLO = Part("yolo", "yolo", files=("yolov8n.pt",))
LCM_LORA = Part("lcm", "lcm-lora-sdv1-5", repo="latent-consistency/lcm-lora-sdv1-5",
                files=("pytorch_lora_weights.safetensors",))  # the fast speed mode's

PARTS = (SD, CONTROLNET_DEPTH, CONTROLNET_CANNY, DPT, CLIP, SAM2, YOLO, LCM_LORA)
NAMES = tuple(dict.fromkeys(p.name for p in PARTS))


def select(names: list[str] | None) -> list[Part]:
    """The parts of these `--only` names (all when None), in layout order."""
    unknown = sorted(set(names or ()) - set(NAMES))
    if unknown:
        raise ValueError(f"unknown part {', '.join(unknown)}; choose from: {','.join(NAMES)}")
    return [p for p in PARTS if names is None or p.name in names]


def download_command(root: Path, parts: list[Part]) -> str:
    names = ",".join(dict.fromkeys(p.name for p in parts))
    return f"restyle models download --dir {root} --only {names}"


def check_complete(root: Path, parts: tuple[Part, ...] | list[Part] = PARTS) -> None:
    """Raise FileNotFoundError naming every incomplete part and the command that fetches them;
    a build calls this before it reads or writes anything."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"--weights {root} is not a folder; get one with: "
                                f"restyle models download --dir {root}")
    incomplete = [(p, p.missing(root)) for p in parts]
    incomplete = [(p, missing) for p, missing in incomplete if missing]
    if incomplete:
        lines = [f"{p.name}: {p.path(root)}/ lacks {', '.join(missing)}" if len(missing) < len(p.files)
                 else f"{p.name}: {p.path(root)}/ is missing" for p, missing in incomplete]
        raise FileNotFoundError(f"--weights {root} is incomplete:\n  " + "\n  ".join(lines) +
                                f"\nfetch them with: {download_command(root, [p for p, _ in incomplete])}")
