"""Build the diffusion artifacts: SD1.5 pipeline folder + depth and canny ControlNets.

Writes ``out_dir/diffusion/{sd,controlnet_depth,controlnet_canny}``, the layout
``restyle.diffusion.Restyler.load`` reads:

* ``size="tiny"`` (weights None): tiny random configs of the real architectures, in the
  spirit of diffusers' own pipeline tests (``get_dummy_components``): UNet and two
  ControlNets with block_out_channels (32, 64), a small AutoencoderKL with the SD
  latent factor 8, a 2-layer CLIP text encoder over the tiny tokenizer of
  ``export.tokenizer``. Seeded (``torch.manual_seed(seed)`` before every component), so
  two builds write byte-identical safetensors. 256x256 working resolution, 20 steps,
  a few seconds on CPU.
* ``size="full"`` (weights None): the full SD1.5 architecture (UNet 860M, 2 ControlNets
  ~360M each, SD VAE, CLIP ViT-L/14 text encoder) with random fp16 weights. **For speed
  measurement only**: the images are noise, and the text encoder uses the tiny tokenizer
  (vocabulary of a few hundred characters instead of 49408 BPE tokens). ~5 GB on disk.
* ``weights=DIR``: real checkpoints, the SD1.5, ControlNet and LCM-LoRA folders of the
  layout in export/weights.py (``restyle models download --dir DIR`` fetches them),
  symlinked (not copied) into place.

The tiny and full random builds write a random LoRA of LCM-LoRA's shape (same target modules,
PEFT/diffusers format) to ``lcm_lora/``, so the loading and fusing code is the real one.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from export.tokenizer import write_tiny_clip_tokenizer
from export.weights import CONTROLNET_CANNY, CONTROLNET_DEPTH, LCM_LORA, SD, check_complete

COMPONENTS = ("sd", "controlnet_depth", "controlnet_canny", "lcm_lora")
LCM_LORA_FILE = LCM_LORA.files[0]

# the parts of --weights (export/weights.py) linked into diffusion/, and their folder there
WEIGHT_FOLDERS = {SD: "sd", CONTROLNET_DEPTH: "controlnet_depth", CONTROLNET_CANNY: "controlnet_canny",
                  LCM_LORA: "lcm_lora"}
# latent-consistency/lcm-lora-sdv1-5: the modules its LoRA adapts (from diffusers'
# train_lcm_distill_lora_sd_wds.py) and its rank; the tiny random LoRA uses a rank its width allows.
LCM_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                    "conv1", "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj"]
LCM_LORA_RANK = {"tiny": 4, "full": 64}

WORKING_RESOLUTION = {"tiny": 256, "full": 512}
SIZES = tuple(WORKING_RESOLUTION)

# SD1.5's own scheduler config (PNDM); Restyler.load turns it into UniPC for 20-step runs.
SD15_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                      num_train_timesteps=1000, set_alpha_to_one=False, skip_prk_steps=True,
                      steps_offset=1, prediction_type="epsilon")


# ---------------------------------------------------------------------------- configs
def unet_config(size: str) -> dict:
    if size == "tiny":
        return dict(sample_size=32, in_channels=4, out_channels=4, layers_per_block=2,
                    block_out_channels=(32, 64),
                    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
                    cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32)
    # runwayml/stable-diffusion-v1-5 unet/config.json
    return dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                block_out_channels=(320, 640, 1280, 1280),
                down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                  "DownBlock2D"),
                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
                cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32, norm_eps=1e-5,
                act_fn="silu", center_input_sample=False, downsample_padding=1, flip_sin_to_cos=True,
                freq_shift=0, mid_block_scale_factor=1)


def controlnet_config(size: str) -> dict:
    """Tiny ControlNet matching the tiny UNet (full size uses ControlNetModel.from_unet)."""
    u = unet_config(size)
    return dict(in_channels=4, layers_per_block=u["layers_per_block"],
                block_out_channels=u["block_out_channels"], down_block_types=u["down_block_types"],
                cross_attention_dim=u["cross_attention_dim"], attention_head_dim=u["attention_head_dim"],
                norm_num_groups=u["norm_num_groups"],
                # 3 stride-2 convs: control images at pixel resolution land on the /8 latent grid
                conditioning_embedding_out_channels=(16, 16, 32, 32) if size == "tiny" else (16, 32, 96, 256))


def vae_config(size: str) -> dict:
    if size == "tiny":
        # Four blocks = the SD latent factor 8, so the tiny profile has SD's latent geometry
        # (256x256 image -> 32x32 latents) and the same multiple-of-8 size rule.
        return dict(in_channels=3, out_channels=3, latent_channels=4, sample_size=256,
                    block_out_channels=(16, 16, 32, 32), layers_per_block=1, norm_num_groups=8,
                    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    return dict(in_channels=3, out_channels=3, latent_channels=4, sample_size=512,
                block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32,
                act_fn="silu", down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.18215)


def text_config(size: str, vocab_size: int, bos_id: int, eos_id: int) -> dict:
    ids = dict(vocab_size=vocab_size, bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=eos_id,
               max_position_embeddings=77)
    if size == "tiny":
        return dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                    layer_norm_eps=1e-5, projection_dim=32, **ids)
    # openai/clip-vit-large-patch14 text config (the vocabulary is the tiny tokenizer's)
    return dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768, **ids)


# ---------------------------------------------------------------------------- build
def _clear(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _init_control_outputs(controlnet) -> None:
    """ControlNet's zero convs (the conditioning embedding's output and the residual outputs)
    start at zero: a fresh ControlNet has no effect. As diffusers' multi-ControlNet tests do
    for the residual outputs, give the random tiny ones small non-zero weights, so the
    control images really steer the result."""
    def init(m):
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=0.05)
            torch.nn.init.zeros_(m.bias)
    controlnet.controlnet_down_blocks.apply(init)
    controlnet.controlnet_mid_block.apply(init)
    controlnet.controlnet_cond_embedding.conv_out.apply(init)


def build_random_lcm_lora(unet, dest: Path, *, size: str, seed: int) -> None:
    """A random LoRA with LCM-LoRA's targets and format (dest/pytorch_lora_weights.safetensors).

    PEFT starts lora_B at zero (a no-op LoRA); small random values make fusing visible."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    rank = LCM_LORA_RANK[size]
    torch.manual_seed(seed)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=LCM_LORA_TARGETS, init_lora_weights="gaussian"))
    state = get_peft_model_state_dict(unet)
    for key, value in state.items():
        if ".lora_B." in key:
            value.normal_(std=0.02 / rank)
    StableDiffusionPipeline.save_lora_weights(dest, unet_lora_layers=state, weight_name=LCM_LORA_FILE)


def build_random(dest: Path, *, size: str, seed: int) -> dict:
    """Random-weight SD1.5-architecture pipeline + 2 ControlNets written to dest/{sd,...}."""
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        PNDMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    dtype = torch.float32 if size == "tiny" else torch.float16
    sd_dir = dest / "sd"
    tok_dir = sd_dir / "tokenizer"
    vocab_size = write_tiny_clip_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    bos_id, eos_id = tokenizer.bos_token_id, tokenizer.eos_token_id

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_config(size))
    torch.manual_seed(seed)
    vae = AutoencoderKL(**vae_config(size))
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_config(size, vocab_size, bos_id, eos_id)))
    controlnets = {}
    for i, name in enumerate(("controlnet_depth", "controlnet_canny")):
        torch.manual_seed(seed + 1 + i)  # different seeds: the two controls must not be twins
        if size == "tiny":
            cn = ControlNetModel(**controlnet_config(size))
            _init_control_outputs(cn)
        else:
            cn = ControlNetModel.from_unet(unet)  # the way the real ControlNets were initialised
        controlnets[name] = cn

    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=PNDMScheduler(**SD15_SCHEDULER), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    if dtype != torch.float32:
        pipe.to(dtype=dtype)
    pipe.save_pretrained(sd_dir, safe_serialization=True)
    counts = {"unet": unet.num_parameters(), "vae": vae.num_parameters(),
              "text_encoder": text_encoder.num_parameters()}
    for name, cn in controlnets.items():
        if dtype != torch.float32:
            cn.to(dtype=dtype)
        cn.save_pretrained(dest / name, safe_serialization=True)
        counts[name] = cn.num_parameters()
    build_random_lcm_lora(unet, dest / "lcm_lora", size=size, seed=seed + 3)
    return {"dtype": str(dtype).removeprefix("torch."), "parameters": counts}


def build_diffusion(out_dir: Path, *, weights: Path | None, size: str, seed: int) -> dict:
    """Write out_dir/diffusion/{sd,controlnet_depth,controlnet_canny}; return its manifest entry
    (a flat dict: source, size, seed, working_resolution, components, parameters, ...).

    ``weights`` given: symlink the three checkpoint folders (layout in the module docstring);
    ``size`` then only sets the working-resolution hint. Otherwise random weights of the
    ``size`` ("tiny" | "full") architecture, seeded with ``seed``.
    """
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    out_dir = Path(out_dir)
    dest = out_dir / "diffusion"
    if weights is not None:
        weights = Path(weights).expanduser().resolve()
        check_complete(weights, list(WEIGHT_FOLDERS))  # names what is missing and its download
    dest.mkdir(parents=True, exist_ok=True)
    for name in COMPONENTS:
        _clear(dest / name)

    entry = {"size": size, "seed": seed, "working_resolution": WORKING_RESOLUTION[size], "default_steps": 20,
             "components": {name: f"diffusion/{name}" for name in COMPONENTS},
             "architecture": "StableDiffusionControlNetPipeline (SD1.5) + MultiControlNet[depth, canny]"}
    if weights is not None:
        sources = {}
        for part, name in WEIGHT_FOLDERS.items():
            (dest / name).symlink_to(part.path(weights), target_is_directory=True)
            sources[name] = {"path": str(part.path(weights)), "hub_repo": part.repo}
        entry.update(source="weights", weights=str(weights), sources=sources, seed=None)
    else:
        entry.update(source=f"random-{size}", weights=None, **build_random(dest, size=size, seed=seed))
        if size == "full":
            entry["note"] = "random full-size weights with a tiny tokenizer: for speed measurement only"
    return entry
