"""Speed modes of the engine on the tiny build: what each runs (denoiser evaluations), that the
cuts are exact where they should be, the LCM-LoRA fusing, and the structure bound."""
from collections import Counter

import numpy as np
import pytest
import torch

from restyle.bench_diffusion import COMPILE_KEYS, run_compile
from restyle.contract import parse_request
from restyle.diffusion import COMPILE_SCOPES, RECOMPILE_LIMIT, Restyler, compiled
from restyle.quality import assess
from restyle.samples import furniture_mask, synthetic_scene
from restyle.speed import CUTS, STRUCTURE_TOLERANCE, Cuts

H, W = 128, 192


@pytest.fixture(scope="module")
def model_dir(tiny_artifacts):
    return tiny_artifacts / "diffusion"


@pytest.fixture(scope="module")
def restyler(model_dir) -> Restyler:
    return Restyler.load(model_dir, "cpu", torch.float32)


def make_room(h, w):
    """A synthetic room, its depth (a ramp), edges and a furniture mask (a box)."""
    return (*synthetic_scene(h, w), furniture_mask(h, w))


@pytest.fixture(scope="module")
def room():
    return make_room(H, W)


def run(restyler, room, cuts=None, **kw):
    image, depth, edges, mask = room
    evals = Counter()
    params = parse_request(style="modern", room_type="living room", seed=5, **kw)
    return restyler.generate(image, depth, edges, mask, params, evals=evals, cuts=cuts), evals


def test_each_mode_counts_what_it_runs(restyler, room):
    quality, q = run(restyler, room, steps=4)
    assert q == {"unet": 8, "controlnet_depth": 8, "controlnet_canny": 8}  # 4 steps x [uncond, cond]
    fast, f = run(restyler, room, speed="fast")
    assert f == {"unet": 4, "controlnet_depth": 4, "controlnet_canny": 4}  # 4 LCM steps, no CFG batch
    # balanced, 10 steps: CFG until step 5 (batch 2, then 1); ControlNets for steps 0-5; full UNet on
    # even steps and where the batch changed (5), the outer blocks only on the others.
    assert CUTS["balanced"] == Cuts(control_end=0.6, cfg_end=0.5, cache_interval=2)
    balanced, b = run(restyler, room, speed="balanced", steps=10)
    assert b == {"unet": 2 * 3 + 3, "unet_shallow": 2 * 2 + 2, "controlnet_depth": 2 * 3 + 1,
                 "controlnet_canny": 2 * 3 + 1}
    for out in (quality, fast, balanced):
        assert out.shape == (H, W, 3) and out.dtype == np.uint8
    assert not np.array_equal(quality, fast) and not np.array_equal(quality, balanced)


def test_levers_one_by_one(restyler, room):
    _, cfg = run(restyler, room, Cuts(cfg_end=0.5), steps=4)
    assert cfg == {"unet": 2 + 2 + 1 + 1, "controlnet_depth": 6, "controlnet_canny": 6}
    _, control = run(restyler, room, Cuts(control_end=0.5), steps=4)
    assert control == {"unet": 8, "controlnet_depth": 4, "controlnet_canny": 4}
    _, cache = run(restyler, room, Cuts(cache_interval=2), steps=4)
    assert cache == {"unet": 4, "unet_shallow": 4, "controlnet_depth": 4, "controlnet_canny": 4}
    _, zero = run(restyler, room, steps=2, canny_scale=0.0)  # a net at scale 0 is skipped, not run
    assert zero == {"unet": 4, "controlnet_depth": 4}


def test_dropping_cfg_is_exactly_no_cfg(restyler, room):
    """Halving the batch hands back cond twice: uncond + g * (cond - uncond) = cond, the same
    noise prediction as guidance 1 (no unconditional half at all)."""
    halved, evals = run(restyler, room, Cuts(cfg_end=0.0), steps=3, guidance=7.5)
    plain, _ = run(restyler, room, steps=3, guidance=1.0)
    assert evals["unet"] == 3
    assert np.abs(halved.astype(int) - plain.astype(int)).max() <= 1


def test_cuts_end_with_their_request(restyler, room):
    before, _ = run(restyler, room, steps=3)
    run(restyler, room, speed="balanced", steps=3)
    run(restyler, room, speed="fast", steps=3)
    after, evals = run(restyler, room, steps=3)
    assert np.array_equal(before, after) and evals["unet"] == 6


def test_fast_unet_is_the_lora_fused_and_quality_unet_untouched(restyler, model_dir):
    """Fused (served) == the same LoRA applied unfused through PEFT, within 1e-4 on the UNet's output
    (fp32; fusing only reorders sums); the quality UNet is the plain base weights."""
    from diffusers import StableDiffusionPipeline

    reference = StableDiffusionPipeline.from_pretrained(model_dir / "sd", safety_checker=None,
                                                        requires_safety_checker=False)
    torch.manual_seed(0)
    sample, t = torch.randn(1, 4, 16, 24), torch.tensor(500)
    text = torch.randn(1, 77, reference.unet.config.cross_attention_dim)
    with torch.inference_mode():
        base = reference.unet(sample, t, text).sample
        reference.load_lora_weights(model_dir / "lcm_lora", adapter_name="lcm")
        unfused = reference.unet(sample, t, text).sample
        fused = restyler.pipes["lcm"][0].unet(sample, t, text).sample
        quality = restyler.pipes["uni_pc"][0].unet(sample, t, text).sample
    assert (unfused - base).abs().max() > 1e-3  # the random LoRA does something
    assert torch.allclose(fused, unfused, atol=1e-4), (fused - unfused).abs().max()
    assert torch.allclose(quality, base, atol=1e-5)


def test_structure_of_faster_modes_stays_near_quality(restyler):
    """restyle.quality's structure score of balanced and fast (their default steps) within
    STRUCTURE_TOLERANCE of quality's, on the tiny pipeline and a synthetic room."""
    image, depth, edges = synthetic_scene(128, 128)
    scores = {}
    for speed in ("quality", "balanced", "fast"):
        params = parse_request(style="modern", room_type="living room", seed=1, speed=speed)
        out = restyler.generate(image, depth, edges, None, params)
        scores[speed] = assess(image, out, edges, depth[None] / 255.0).score
    assert scores["balanced"] >= scores["quality"] - STRUCTURE_TOLERANCE, scores
    assert scores["fast"] >= scores["quality"] - STRUCTURE_TOLERANCE, scores


def test_gpu_path_fp16_channels_last_matches_float32(restyler, model_dir, room):
    """The t4 profile's weights and layout (fp16, denoisers in channels_last), run here on the CPU:
    a dtype or layout mismatch anywhere in the engine (control embeddings, DeepCache's kept
    features, the LCM copy, the inpaint path) raises here instead of on a GPU's first request.
    Every speed and the furniture mode stay within 4/255 per pixel of float32 (fp16 rounding
    through 20 steps of random tiny weights: 2/255 measured), with the same evaluations.
    The comparison needs the seed's noise to be the same in both dtypes, as under the pinned torch 2.14;
    torch 2.11's CPU randn draws other numbers in fp16 (the GPU hosts' torch: other images per seed
    there, as between any two torch versions, not wrong ones)."""
    half_noise, noise = (torch.randn(64, generator=torch.Generator().manual_seed(5), dtype=dtype)
                         for dtype in (torch.float16, torch.float32))
    assert torch.allclose(half_noise.float(), noise, atol=1e-2), f"torch {torch.__version__} draws other fp16 noise"
    half = Restyler.load(model_dir, "cpu", torch.float16, channels_last=True)
    unet = half.pipes["uni_pc"][0].unet
    assert unet.dtype == torch.float16 and unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    for speed, mode in (("quality", "full"), ("balanced", "full"), ("fast", "full"), ("balanced", "furniture")):
        want, want_evals = run(restyler, room, speed=speed, mode=mode)
        got, got_evals = run(half, room, speed=speed, mode=mode)
        diff = np.abs(got.astype(int) - want.astype(int))
        assert got_evals == want_evals, speed
        assert diff.max() <= 4 and diff.mean() < 0.5, (speed, mode, diff.max(), diff.mean())


@pytest.mark.parametrize("scope", COMPILE_SCOPES)
def test_compiled_denoisers_warm_up_then_match_eager(model_dir, scope):
    """The t4 profile's compile path (torch.compile of every UNet's and ControlNet's forward, or of
    their repeated blocks; the counting hooks eager around it) through `restyle bench compile`'s
    protocol, with the aot_eager backend: dynamo's tracing, guards and graph breaks are the real
    ones, inductor's code generation would take minutes on this CPU (the same command with inductor:
    BENCHMARKS.md). warm_up() at two sizes compiles every graph that later requests need: each speed
    at other sizes (symbolic), other step counts, the mask modes. Nothing compiles at request time,
    no function runs out of graphs (it then runs eagerly with a log line as the only sign: the
    DeepCache bookkeeping once multiplied the graphs past the limit), the output is within 1/255 per
    pixel of eager and the evaluations counted are the same. Sizes stay small: above ~100x130 px CPU
    convolutions switch backend, and the fake-tensor tracing guards on that (not so on a GPU)."""
    reports = []
    out = run_compile(model_dir, scope=scope, backend="aot_eager", long_side=128, progress=reports.append)
    assert any("warm-up 6/6: fast at 96x128" in line for line in reports), reports
    assert out["graphs"] > 0 and out["graphs_after"] == 0, out
    assert out["gave_up"] == 0 and out["max_diff"] <= 1 and out["evals_equal"], out
    assert tuple(out) == COMPILE_KEYS


def test_control_images_embedded_once_per_request(restyler, room, model_dir):
    """Each ControlNet embeds its control image at the first step and reuses it, with or without the
    CFG batch halving; the output is the one of a restyler that never embedded another image."""
    cuts = restyler.cuts
    calls = Counter()

    def counted(i, embed):
        def run(image):
            calls[i] += 1
            return embed(image)
        return run

    real = list(cuts._embed)
    cuts._embed = [counted(i, embed) for i, embed in enumerate(real)]
    try:
        run(restyler, room, steps=3)
        assert calls == {0: 1, 1: 1}
        run(restyler, room, speed="balanced", steps=4)
        assert calls == {0: 2, 1: 2}
        other = tuple(np.ascontiguousarray(np.flip(part, axis=1)) for part in room)
        got, _ = run(restyler, other, steps=2)
    finally:
        cuts._embed = real
    fresh, _ = run(Restyler.load(model_dir, "cpu", torch.float32), other, steps=2)
    assert np.array_equal(got, fresh)


def test_controlnet_takes_an_embedded_image_as_given(restyler, room):
    """A ControlNet called with its control image and with that image already embedded gives the
    same residuals (the pass-through keeps direct calls to a net exact)."""
    net = restyler.pipes["uni_pc"][0].controlnet.nets[0]
    torch.manual_seed(0)
    sample, t = torch.randn(1, 4, H // 8, W // 8), torch.tensor(500)
    text = torch.randn(1, 77, net.config.cross_attention_dim)
    image = torch.rand(1, 3, H, W)
    with torch.inference_mode():
        direct = net(sample, t, text, image, return_dict=False)
        given = net(sample, t, text, restyler.cuts._embed[0](image), return_dict=False)
    assert torch.equal(direct[1], given[1])
    assert all(torch.equal(a, b) for a, b in zip(direct[0], given[0]))


def test_compile_options_fall_back_on_an_older_torch(monkeypatch):
    """torch 2.11's torch.compile (the GPU hosts') takes no recompile_limit / isolate_recompiles:
    the engine then raises dynamo's global limit instead of failing to load."""
    calls = []

    def older_compile(model=None, *, fullgraph=False, dynamic=None, backend="inductor", mode=None,
                      options=None, disable=False):
        calls.append({"backend": backend, "dynamic": dynamic})
        return model

    monkeypatch.setattr(torch, "compile", older_compile)
    fn = lambda x: x
    with torch._dynamo.config.patch(recompile_limit=8):
        assert compiled(fn, "inductor", isolate=True) is fn
        assert compiled(fn, "inductor", dynamic=True) is fn
        assert torch._dynamo.config.recompile_limit == RECOMPILE_LIMIT
    assert calls == [{"backend": "inductor", "dynamic": None}, {"backend": "inductor", "dynamic": True}]


def test_compile_options_passed_where_torch_has_them(monkeypatch):
    calls = []

    def newer_compile(model=None, *, dynamic=None, backend="inductor", recompile_limit=None,
                      isolate_recompiles=False):
        calls.append((recompile_limit, isolate_recompiles))
        return model

    monkeypatch.setattr(torch, "compile", newer_compile)
    with torch._dynamo.config.patch(recompile_limit=8):
        compiled(len, "inductor", isolate=True)
        compiled(len, "inductor")
        assert torch._dynamo.config.recompile_limit == 8  # the global one untouched
    assert calls == [(RECOMPILE_LIMIT, True), (RECOMPILE_LIMIT, False)]
