"""What the speed modes skip, and what a request cost (denoiser evaluations).

In every mode each ControlNet embeds its control image (its conditioning embedding: eight
convolutions from the image's full size down to the latent grid) once per request, not at every
step as diffusers does: the image is the same at every step, so the result is identical. At 512 px
that is 7.4 of a ControlNet evaluation's 142 GMAC (5 %, torch's FlopCounterMode), spent at full
resolution with few channels; on the tiny build, a third of a generation.

``quality`` otherwise runs diffusers' pipeline as it is. ``balanced`` makes three cuts on the same
UNet and ControlNets; they are applied by hooks, so the pipelines themselves run unchanged:

* the ControlNets stop after ``control_end`` of the steps (diffusers' ``control_guidance_end``;
  a net whose scale is 0 is skipped instead of run and multiplied by 0),
* classifier-free guidance stops after ``cfg_end`` of the steps: only the conditional half of
  the batch is evaluated and handed back twice, so uncond + g * (cond - uncond) = cond,
* DeepCache-style reuse: every ``cache_interval``-th step runs the whole UNet; the steps
  between run only its outermost blocks on the cached output of the deep ones, and reuse the
  ControlNets' residuals of that full step (the outermost blocks only read the shallow ones).

Why not the ``deepcache`` package: it wraps the UNet for every caller (the quality path shares
this UNet), its cache breaks when the batch halves at ``cfg_end``, and it runs the ControlNets
on every cached step, where two ControlNets cost about as much as the UNet they feed.

``fast`` is another model (LCM-LoRA fused into a second UNet) and scheduler: restyle.diffusion.
"""
from __future__ import annotations

from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Cuts:
    control_end: float = 1.0  # fraction of the steps with ControlNet conditioning
    cfg_end: float = 1.0  # fraction of the steps with the unconditional half of the batch
    cache_interval: int = 1  # the deep UNet blocks (and the ControlNets) run every Nth step


# balanced: chosen from `restyle bench diffusion --levers` (BENCHMARKS.md) within the
# structure bound tests/test_speed_modes.py holds it to.
# balanced's and fast's structure score (restyle.quality) may fall this far below quality's on
# the tiny pipeline (tests/test_speed_modes.py holds them to it).
STRUCTURE_TOLERANCE = 0.05
CUTS = {"quality": Cuts(), "balanced": Cuts(control_end=0.6, cfg_end=0.5, cache_interval=2), "fast": Cuts()}


class StepCuts:
    """Applies a request's ``Cuts`` to one UNet and its MultiControlNet; a pass-through outside
    ``applied()``. Relies on what every diffusers ControlNet pipeline does: per step, the
    MultiControlNet is called once, then the UNet once."""

    def __init__(self, unet, controlnet):
        self._deep_out: dict[int, torch.Tensor] = {}
        self._reset()
        self._nets = controlnet.nets
        unet.register_forward_pre_hook(self._unet_in, with_kwargs=True)
        unet.register_forward_hook(self._unet_out)
        for i, block in enumerate((*unet.down_blocks[1:], unet.mid_block, *unet.up_blocks[:-1])):
            block.forward = self._deep(block.forward, i)
        self._embed = [_embedding_given(net) for net in self._nets]
        controlnet.forward = self._controlnets

    @contextmanager
    def applied(self, cuts: Cuts, total: int, cfg: bool):
        """Cut the next ``total``-step run; ``cfg``: its batch is [uncond, cond]."""
        self._reset()
        self.cuts, self.total, self.cfg = cuts, total, cfg
        try:
            yield
        finally:
            self._reset()

    def _reset(self) -> None:
        self.cuts, self.cfg, self.total, self.step = Cuts(), False, 0, 0
        self.halve = self.reusing = False  # the current step's decisions
        # The deep blocks' outputs of the last full step. Written inside the compiled UNet, so dynamo
        # guards on the dict's length: emptied before every full step, it is empty there and full on
        # reuse steps, which keeps it to the two graphs `reusing` makes anyway (holding the
        # ControlNets' residuals too, or last step's outputs, multiplied the graphs past the limit).
        self._deep_out.clear()
        self._decided, self._controlnet_out, self._cache_batch = -1, None, 0
        self._embedded = {}  # net index -> (its control image, that image embedded)

    def _begin(self, batch: int) -> None:
        """Decide this step's cuts once, at its first call (the ControlNets)."""
        if self._decided == self.step:
            return
        self._decided = self.step
        c = self.cuts
        self.halve = self.cfg and (self.step + 1) / self.total > c.cfg_end
        run_batch = batch // 2 if self.halve else batch
        self.reusing = bool(c.cache_interval > 1 and self.step % c.cache_interval and self._cache_batch == run_batch)
        if not self.reusing:
            self._cache_batch = run_batch
            self._deep_out.clear()

    def _deep(self, forward, key: int):
        def run(*args, **kwargs):
            if self.reusing:
                return self._deep_out[key]
            # kept in every mode (freed at the next full step): a condition here would be one
            # more guard, and quality's full steps could not share balanced's compiled graphs
            out = self._deep_out[key] = forward(*args, **kwargs)
            return out
        return run

    def _controlnets(self, sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale, **kwargs):
        """MultiControlNetModel.forward with the cuts: zero-scale nets skipped, reuse, CFG halving."""
        self._begin(sample.shape[0])
        active = [(i, net, image, scale) for i, (net, image, scale)
                  in enumerate(zip(self._nets, controlnet_cond, conditioning_scale)) if scale != 0]
        if not active:
            return None, None
        if self.reusing:
            return self._controlnet_out
        if self.halve:
            sample, encoder_hidden_states = _cond_half(sample), _cond_half(encoder_hidden_states)
        kwargs["return_dict"] = False
        down = mid = None
        for i, net, image, scale in active:
            cond = self._embedding(i, image)
            d, m = net(sample, timestep, encoder_hidden_states, _cond_half(cond) if self.halve else cond, scale,
                       **kwargs)
            down = d if down is None else [a + b for a, b in zip(down, d)]
            mid = m if mid is None else mid + m
        if self.cuts.cache_interval > 1:
            self._controlnet_out = down, mid
        return down, mid

    def _embedding(self, i: int, image: torch.Tensor) -> torch.Tensor:
        """Net ``i``'s embedding of ``image``, computed at its first step: the pipelines pass the
        same control image tensor at every step of a run."""
        seen = self._embedded.get(i)
        if seen is None or seen[0] is not image:
            seen = self._embedded[i] = image, self._embed[i](image)
        return seen[1]

    def _unet_in(self, module, args, kwargs):
        self._begin(args[0].shape[0])
        if self.halve:
            args = (_cond_half(args[0]), *args[1:])
            kwargs["encoder_hidden_states"] = _cond_half(kwargs["encoder_hidden_states"])
        return args, kwargs

    def _unet_out(self, module, args, output):
        self.step += 1
        if self.halve:  # the pipeline splits [uncond, cond]: give it cond twice
            return (torch.cat([output[0]] * 2), *output[1:])
        return None


def _embedding_given(net) -> Callable[[torch.Tensor], torch.Tensor]:
    """Let ``net`` take its control image already embedded: an input with the embedding's channels
    passes through its conditioning embedding (a plain image still gets embedded, so direct calls
    are unchanged). Returns the embedding itself. A shape test, not a flag, keeps torch.compile's
    graph of the net whole."""
    module = net.controlnet_cond_embedding
    embed, channels = module.forward, net.conv_in.out_channels
    if net.config.conditioning_channels == channels:
        raise ValueError("a ControlNet whose control image has as many channels as its embedding is not supported")
    module.forward = lambda cond: cond if cond.shape[1] == channels else embed(cond)
    return embed


def _cond_half(x: torch.Tensor) -> torch.Tensor:
    return x[x.shape[0] // 2:]


class EvalCounter:
    """Denoiser evaluations per model: forward calls times batch, counted by pre-hooks
    registered after StepCuts' (so a halved batch counts as what really ran)."""

    def __init__(self):
        self.counts: Counter = Counter()

    def watch(self, module: torch.nn.Module, name: str | Callable[[], str]) -> None:
        def count(mod, args, kwargs):
            sample = args[0] if args else kwargs["sample"]
            self.counts[name() if callable(name) else name] += int(sample.shape[0])
        module.register_forward_pre_hook(count, with_kwargs=True)
