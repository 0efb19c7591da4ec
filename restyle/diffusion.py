"""SD1.5 + ControlNet (depth + canny): restyle a room photo while keeping its geometry.

Modes (restyle.contract.MODES):

* ``"full"``: the whole picture is generated anew (text-to-image), held to the room's
  geometry by the depth map and the canny edges.
* ``"furniture"``: only the furniture is restyled: inpainting inside the furniture mask
  (slightly dilated so outlines and contact shadows change with the object); walls,
  floor and windows are pasted back from the photo.
* ``"keep_furniture"``: the furniture is kept and everything else (walls, floor, finishes)
  restyled: inpainting inside the inverted mask.

Fallback: a mask mode whose region to repaint is empty (no furniture found for
``"furniture"``; a mask covering the whole picture for ``"keep_furniture"``) or a mask
that is missing (None / wrong size) runs as ``"full"``, so every request gets a restyled
room; ``effective_mode()`` says which mode a request will actually run.

Both pipelines share one set of weights (the inpaint pipeline is made from the text-to-image
pipeline's components). On CPU the same inputs and seed give byte-identical output: noise
comes from a CPU ``torch.Generator`` seeded with the request's seed.
"""
from __future__ import annotations

import copy
import inspect
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from restyle.contract import GenerationParams
from restyle.speed import CUTS, Cuts, EvalCounter, StepCuts
from restyle.styles import build_prompt

log = logging.getLogger(__name__)

SIZE_MULTIPLE = 8
FAST_GUIDANCE = 1.0  # LCM-LoRA's own; <= 1 means no unconditional half (diffusers skips CFG)
# Graphs a compiled function may hold before dynamo gives up and runs it eagerly from then on
# (its default, 8, was spent within one balanced request). Counted after warm_up():
# "model" scope, on the tiny build: the quality/balanced UNet 12, each ControlNet 6, the fast UNet
# 2 (the speed modes' paths are traced into each forward); "blocks" scope, on the full-size
# architectures: ResnetBlock2D 29 (one per channel layout, batch 2 and batch 1), Transformer2DModel
# 8 (tests/test_speed_modes.py, BENCHMARKS.md). On a CPU convolution backends change with the size
# and add a few.
RECOMPILE_LIMIT = 64
# Photo shapes compiled before the first request: most room photos are 4:3. In "model" scope the
# first size gets graphs of its own and the second, with both sides different, graphs with symbolic
# sizes that serve every other size; "blocks" graphs are symbolic from the first (the second then
# compiles nothing).
WARMUP_ASPECTS = ((3, 4), (4, 3))
# What torch.compile compiles: each denoiser's whole forward ("model"), or the blocks SD's UNet
# and ControlNet repeat ("blocks": the resnets and the attention blocks, most of the MACs), with
# symbolic sizes, one graph per channel layout shared by every instance of it in all four
# denoisers; the speed modes' hooks stay eager between them. "blocks" compiles ~10x less
# (BENCHMARKS.md), which is what a start or a scale-out pays.
COMPILE_SCOPES = ("model", "blocks")
REPEATED_BLOCKS = ("ResnetBlock2D", "Transformer2DModel")


def effective_mode(mode: str, mask: np.ndarray | None, hw: tuple[int, int] | None = None) -> str:
    """The mode a request really runs: a mask mode with nothing to repaint runs as "full"."""
    if mode == "full":
        return mode
    if mask is None or mask.size == 0 or (hw is not None and mask.shape[:2] != tuple(hw)):
        return "full"
    furniture = np.asarray(mask) > 127
    if mode == "furniture" and not furniture.any():
        return "full"
    if mode == "keep_furniture" and furniture.all():
        return "full"
    return mode


def warmup_sizes(long_side: int, multiple: int) -> list[tuple[int, int]]:
    from restyle.imaging import working_size
    return [working_size(h, w, long_side, multiple) for h, w in WARMUP_ASPECTS]


def compiled(fn: Callable, backend: str | Callable, *, isolate: bool = False, dynamic: bool | None = None) -> Callable:
    """torch.compile with room for RECOMPILE_LIMIT graphs, and with cache entries of its own if
    ``isolate``. Those are torch.compile arguments in newer torch (2.14 here; the GPU hosts' 2.11 has
    neither, checked in its wheel): there the limit is dynamo's global one, raised to ours, and
    entries are shared per function (both UNets then share one budget, which fits)."""
    supported = inspect.signature(torch.compile).parameters
    options = {}
    if "recompile_limit" in supported:
        options["recompile_limit"] = RECOMPILE_LIMIT
    else:
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    if isolate and "isolate_recompiles" in supported:
        options["isolate_recompiles"] = True
    return torch.compile(fn, backend=backend, dynamic=dynamic, **options)


def _same_kwargs(module, args, kwargs):
    """The inpaint pipelines call the UNet without ``timestep_cond``: one set of keyword arguments
    lets both pipelines share compiled graphs (dynamo guards on their number)."""
    kwargs.setdefault("timestep_cond", None)
    return args, kwargs


def _to_uint8_map(x: np.ndarray, hw: tuple[int, int], name: str) -> np.ndarray:
    """A control map as uint8 [H, W]: uint8 as given, floats in [0, 1] scaled; resized if needed."""
    a = np.asarray(x)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and a.shape[-1] in (1, 3):
        a = a[..., 0]
    if a.ndim != 2:
        raise ValueError(f"{name} must be a [H, W] map, got shape {tuple(np.asarray(x).shape)}")
    if a.dtype != np.uint8:
        a = (np.clip(np.nan_to_num(a.astype(np.float32)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if a.shape != tuple(hw):
        import cv2
        a = cv2.resize(a, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)
    return a


def fit_prompt(tokenizer, text: str) -> str:
    """Drop trailing comma-separated phrases until the prompt fits CLIP's 77 tokens, so the
    cut falls between phrases (build_prompt puts the generic style detail last)."""
    limit, parts = tokenizer.model_max_length, text.split(", ")
    # verbose=False: an over-long prompt is what is being measured, not a mistake to warn of
    while len(parts) > 1 and len(tokenizer(", ".join(parts), truncation=False, verbose=False).input_ids) > limit:
        parts.pop()
    return ", ".join(parts)


def _rgb(gray: np.ndarray):
    from PIL import Image
    return Image.fromarray(np.repeat(gray[..., None], 3, axis=2))


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    import cv2
    if radius <= 0:
        return mask
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask, kernel)


class Restyler:
    """Holds the pipelines; ``generate`` is the one call a server needs.

    Speeds (restyle.contract.SPEEDS): ``quality`` and ``balanced`` run one UNet with UniPC
    (balanced with restyle.speed's cuts); ``fast`` runs a second UNet with LCM-LoRA fused into
    it at load time and LCMScheduler. A second UNet and not one UNet with the adapter switched
    per request: fusing into the shared UNet would change the quality path, and an unfused
    PEFT adapter adds its low-rank matmuls to every layer of every fast step (measured in
    BENCHMARKS.md); the copy costs its weights once (1.7 GB fp16, counted in restyle/profiles.py).
    Text encoder, VAE and ControlNets are shared.
    """

    def __init__(self, pipes: dict[str, tuple], cuts: StepCuts, counter: EvalCounter, device: str,
                 dtype: torch.dtype):
        self.pipes = pipes  # "uni_pc" | "lcm" -> (text-to-image, inpaint)
        self.cuts = cuts
        self.counter = counter
        self.device = device
        self.dtype = dtype

    @classmethod
    def load(cls, model_dir: Path, device: str = "cpu", dtype: torch.dtype = torch.float32,
             compile_backend: str | Callable | None = None, compile_scope: str = "blocks",
             channels_last: bool | None = None) -> "Restyler":
        """Load ``model_dir/{sd,controlnet_depth,controlnet_canny,lcm_lora}`` (export/diffusion.py's
        layout). ``compile_backend``: torch.compile the UNets and ControlNets with it, over
        ``compile_scope`` (COMPILE_SCOPES); then warm_up() before serving: compiling happens at a
        graph's first call. ``channels_last``: the denoisers' memory format, by default on CUDA
        (cuDNN's fp16 convolutions want NHWC); a CPU can run the GPU's fp16 + channels_last path
        too, slowly, which is how tests and `bench gpu --device cpu` rehearse it."""
        from diffusers import (
            ControlNetModel,
            LCMScheduler,
            StableDiffusionControlNetInpaintPipeline,
            StableDiffusionControlNetPipeline,
            UniPCMultistepScheduler,
        )
        from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

        model_dir = Path(model_dir)
        missing = [name for name in ("sd", "controlnet_depth", "controlnet_canny", "lcm_lora")
                   if not (model_dir / name).is_dir()]
        if missing:
            raise FileNotFoundError(f"{model_dir} lacks {', '.join(missing)}; build it with "
                                    f"`restyle models build` (export/diffusion.py)")
        if compile_scope not in COMPILE_SCOPES:
            raise ValueError(f"unknown compile scope '{compile_scope}'; choose one of: {', '.join(COMPILE_SCOPES)}")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but torch sees no GPU")
        t0 = time.perf_counter()
        controlnet = MultiControlNetModel([
            ControlNetModel.from_pretrained(model_dir / "controlnet_depth", torch_dtype=dtype, local_files_only=True),
            ControlNetModel.from_pretrained(model_dir / "controlnet_canny", torch_dtype=dtype, local_files_only=True),
        ])
        pipe = StableDiffusionControlNetPipeline.from_pretrained(
            model_dir / "sd", controlnet=controlnet, safety_checker=None, requires_safety_checker=False,
            dtype=dtype, local_files_only=True)  # diffusers 0.42: `dtype` (torch_dtype is deprecated)
        pipe.to(device)
        components = dict(pipe.components)
        lcm_unet = copy.deepcopy(pipe.unet)  # read once from disk
        pipes = {}
        # UniPC: good images at 20 steps (SD's default PNDM needs ~50); LCM: 4-6 steps.
        for name, unet, scheduler in (("uni_pc", pipe.unet, UniPCMultistepScheduler),
                                      ("lcm", lcm_unet, LCMScheduler)):
            # own scheduler objects (schedulers keep per-call state), shared weights
            parts = {**components, "unet": unet}
            pipes[name] = tuple(
                kind(**{**parts, "scheduler": scheduler.from_config(pipe.scheduler.config)},
                     requires_safety_checker=False)
                for kind in (StableDiffusionControlNetPipeline, StableDiffusionControlNetInpaintPipeline))
            for p in pipes[name]:
                p.set_progress_bar_config(disable=True)
        fast = pipes["lcm"][0]
        fast.load_lora_weights(model_dir / "lcm_lora", adapter_name="lcm")
        fast.fuse_lora(components=["unet"])
        fast.unload_lora_weights()  # the fused weights stay; the LoRA layers go

        denoisers = [pipe.unet, lcm_unet, *controlnet.nets]
        if channels_last is None:
            channels_last = device.startswith("cuda")
        for model in denoisers:
            model.fuse_qkv_projections()  # one matmul for q, k, v (after the LoRA is fused into them)
            model.requires_grad_(False)  # inference only (dynamo guards on it: one flag for all four)
            if channels_last:
                model.to(memory_format=torch.channels_last)
        cuts = StepCuts(pipe.unet, controlnet)
        counter = EvalCounter()
        counter.watch(pipe.unet, lambda: "unet_shallow" if cuts.reusing else "unet")
        counter.watch(lcm_unet, "unet")
        for name, net in zip(("controlnet_depth", "controlnet_canny"), controlnet.nets):
            counter.watch(net, name)
        if compile_backend and compile_scope == "model":
            # The forward only: the counting hooks stay eager around it; the cuts' block hooks are
            # traced into it, one graph per path (RECOMPILE_LIMIT), entries of its own per denoiser.
            for unet in (pipe.unet, lcm_unet):
                unet.register_forward_pre_hook(_same_kwargs, with_kwargs=True)
            for model in denoisers:
                model.forward = compiled(model.forward, compile_backend, isolate=True)
        elif compile_backend:
            # one backend object for all: dynamo recompiles a function called with another
            blocks = [block for model in denoisers for block in model.modules()
                      if type(block).__name__ in REPEATED_BLOCKS]
            for block in blocks:
                block.forward = compiled(block.forward, compile_backend, dynamic=True)
        log.info("diffusion loaded from %s on %s (%s) in %.1fs", model_dir, device, dtype, time.perf_counter() - t0)
        return cls(pipes, cuts, counter, device, dtype)

    def generate(self, image: np.ndarray, depth: np.ndarray, edges: np.ndarray, mask: np.ndarray | None,
                 params: GenerationParams, callback: Callable[[int, int], None] | None = None,
                 evals: Counter | None = None, cuts: Cuts | None = None) -> np.ndarray:
        """Restyle ``image`` (uint8 HxWx3, H and W multiples of 8); returns uint8 HxWx3, same size.

        ``depth`` and ``edges`` are uint8 [H, W] maps (float maps in [0, 1] and other sizes are
        accepted and converted); ``mask`` is the furniture mask uint8 [H, W] 0/255 (used by
        the mask modes only; resized to the image if its size differs). ``callback(step, total)`` runs after every denoising step,
        step = 1..total. ``evals``, if given, receives the denoiser evaluations per model
        (forward calls times batch: "unet", "unet_shallow" (a DeepCache step), "controlnet_depth",
        "controlnet_canny"). ``cuts`` replaces the speed's own (restyle.speed.CUTS), for benchmarks.
        """
        from PIL import Image

        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image must be uint8 HxWx3, got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        if h % SIZE_MULTIPLE or w % SIZE_MULTIPLE:
            raise ValueError(f"image height and width must be multiples of {SIZE_MULTIPLE}, got {h}x{w}")
        depth_map = _to_uint8_map(depth, (h, w), "depth")
        edge_map = _to_uint8_map(edges, (h, w), "edges")
        mask = None if mask is None else np.asarray(mask)
        if mask is not None and mask.ndim == 3 and mask.shape[0] == 1:
            mask = mask[0]
        if mask is not None and mask.ndim == 2 and mask.size and mask.shape != (h, w):
            import cv2
            mask = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        mode = effective_mode(params.mode, mask, (h, w))
        if mode != params.mode:
            log.info("mode %s has nothing to repaint with this mask; running as full", params.mode)

        fast = params.speed == "fast"
        cuts = cuts or CUTS[params.speed]
        guidance = FAST_GUIDANCE if fast else float(params.guidance)
        tokenizer = self.pipes["uni_pc"][0].tokenizer
        positive, negative = (fit_prompt(tokenizer, text)
                              for text in build_prompt(params.style, params.room_type, params.prompt))
        common = dict(
            prompt=positive, negative_prompt=negative, control_image=[_rgb(depth_map), _rgb(edge_map)],
            height=h, width=w, num_inference_steps=params.num_steps, guidance_scale=guidance,
            controlnet_conditioning_scale=[float(params.depth_scale), float(params.canny_scale)],
            control_guidance_end=cuts.control_end,
            generator=torch.Generator("cpu").manual_seed(int(params.seed)), output_type="np")
        if callback is not None:
            def on_step_end(pipe, i, t, kwargs):
                callback(i + 1, pipe.num_timesteps)
                return {}
            common["callback_on_step_end"] = on_step_end
            common["callback_on_step_end_tensor_inputs"] = []

        text2img, inpaint = self.pipes["lcm" if fast else "uni_pc"]
        self.counter.counts.clear()
        with torch.inference_mode(), self.cuts.applied(cuts, params.num_steps, cfg=guidance > 1):
            if mode == "full":
                out = text2img(image=common.pop("control_image"), **common).images[0]
            else:
                furniture = (mask > 127).astype(np.uint8) * 255
                if mode == "furniture":
                    repaint = _dilate(furniture, max(1, round(max(h, w) / 100)))
                else:
                    repaint = 255 - furniture
                out = inpaint(image=Image.fromarray(image), mask_image=Image.fromarray(repaint, "L"),
                              strength=1.0, **common).images[0]
        if evals is not None:
            evals.update(self.counter.counts)
        out = (np.clip(np.nan_to_num(out), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        if mode != "full":
            out = self._paste_back(image, out, repaint)
        return out

    def warm_up(self, sizes: list[tuple[int, int]], report: Callable[[str], None] = log.info) -> None:
        """One request per speed and size, on a synthetic room: a compiled engine compiles each
        graph at its first call (minutes on a GPU), which the server's start pays instead of its
        first users. Default steps, so every path of the speeds' cuts runs; a mask mode shares
        the full mode's graphs (_same_kwargs)."""
        from restyle.contract import SPEEDS, parse_request
        from restyle.samples import synthetic_scene

        runs = [(size, speed) for size in sizes for speed in SPEEDS]
        for i, ((h, w), speed) in enumerate(runs, 1):
            t0 = time.perf_counter()
            self.generate(*synthetic_scene(h, w), None,
                          parse_request(style="modern", room_type="living room", speed=speed, seed=0))
            report(f"diffusion warm-up {i}/{len(runs)}: {speed} at {w}x{h} in {time.perf_counter() - t0:.1f} s")

    @staticmethod
    def _paste_back(source: np.ndarray, result: np.ndarray, repaint: np.ndarray) -> np.ndarray:
        """Keep the photo's own pixels outside the repainted region (the VAE round trip would
        soften them), feathering the seam inwards: pixels outside ``repaint`` stay exact."""
        import cv2
        r = max(1, max(source.shape[:2]) // 128)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        inner = cv2.erode(repaint, kernel).astype(np.float32) / 255.0
        alpha = cv2.GaussianBlur(inner, (2 * r + 1, 2 * r + 1), 0) * (repaint > 0)
        alpha = alpha[..., None]
        blended = alpha * result.astype(np.float32) + (1.0 - alpha) * source.astype(np.float32)
        return (blended + 0.5).astype(np.uint8)
