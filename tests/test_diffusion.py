"""Restyler on real tiny SD1.5 + 2 ControlNet components (built once per module, seeded)."""
import numpy as np
import pytest
import torch

from export.diffusion import build_diffusion
from restyle import cancellation
from restyle.contract import MODES, GenerationParams, InvalidRequest, parse_request
from restyle.diffusion import Restyler, effective_mode, fit_prompt

STEPS = 3  # enough to exercise the loop; the 20-step timing is measured outside the tests
H, W = 128, 192


@pytest.fixture(scope="module")
def restyler(tmp_path_factory) -> Restyler:
    out = tmp_path_factory.mktemp("artifacts")
    build_diffusion(out, weights=None, size="tiny", seed=0)
    return Restyler.load(out / "diffusion", "cpu", torch.float32)


@pytest.fixture(scope="module")
def room():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    depth = np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1))
    edges = np.zeros((H, W), np.uint8)
    edges[::16] = 255
    edges[:, ::24] = 255
    mask = np.zeros((H, W), np.uint8)
    mask[60:120, 20:100] = 255
    return image, depth, edges, mask


def params(**kw) -> GenerationParams:
    kw.setdefault("steps", STEPS)
    kw.setdefault("style", "modern")
    kw.setdefault("seed", 0)
    return parse_request(room_type="living room", **kw)


# ------------------------------------------------------------------ the request contract
def test_defaults_validate():
    p = parse_request(style="boho")
    assert (p.num_steps, p.guidance, p.depth_scale, p.canny_scale, p.mode, p.speed, p.seed) == (
        20, 7.5, 1.0, 0.5, "full", "quality", None)


@pytest.mark.parametrize("field, value, message", [
    ("steps", 0, "steps must be between 1 and 50, got 0"),
    ("steps", 10000, "steps must be between 1 and 50, got 10000"),
    ("steps", 2.5, "steps must be a whole number between 1 and 50"),
    ("guidance", -0.1, "guidance must be between 0 and 30, got -0.1"),
    ("guidance", 31, "guidance must be between 0 and 30, got 31"),
    ("guidance", float("nan"), "guidance must be a number between 0 and 30"),
    ("depth_scale", 2.5, "depth_scale must be between 0 and 2, got 2.5"),
    ("canny_scale", -1, "canny_scale must be between 0 and 2, got -1"),
    ("seed", -1, "seed must be between 0 and 9223372036854775807, got -1"),
    ("seed", 2**63, "seed must be between 0 and 9223372036854775807"),
    ("mode", "walls", "mode must be one of full, furniture, keep_furniture, got 'walls'"),
    ("style", "gothic", "unknown style 'gothic'; choose one of: modern"),
    ("prompt", "x" * 301, "prompt is too long: 301 characters"),
    ("room_type", "garage", "unknown room type 'garage'; choose one of: living room"),
    ("speed", "turbo", "speed must be one of quality, balanced, fast, got 'turbo'"),
])
def test_validation_names_field_and_range(field, value, message):
    kw = {"style": "modern", field: value}
    with pytest.raises(InvalidRequest) as err:
        parse_request(**kw)
    assert str(err.value).startswith(message) and err.value.field == field


def test_validation_normalises_numpy_scalars():
    p = parse_request(style=b"Mid Century Modern", steps=np.int32(7), seed=np.int64(5), guidance=np.float32(3.0),
                      mode=b"furniture", prompt="  a   green  sofa ", room_type="Living_Room")
    assert (p.style, p.steps, p.seed, p.guidance, p.mode) == ("mid-century-modern", 7, 5, 3.0, "furniture")
    assert (p.prompt, p.room_type) == ("a green sofa", "living room")
    assert type(p.steps) is int and type(p.guidance) is float


def test_effective_mode_falls_back_to_full():
    empty, full = np.zeros((8, 8), np.uint8), np.full((8, 8), 255, np.uint8)
    some = empty.copy()
    some[2:4, 2:4] = 255
    assert effective_mode("furniture", empty) == "full"
    assert effective_mode("furniture", None) == "full"
    assert effective_mode("furniture", some, (16, 16)) == "full"  # wrong size
    assert effective_mode("furniture", some, (8, 8)) == "furniture"
    assert effective_mode("keep_furniture", full) == "full"
    assert effective_mode("keep_furniture", empty) == "keep_furniture"
    assert effective_mode("full", some) == "full"


# ------------------------------------------------------------------ generation
@pytest.mark.parametrize("mode", MODES)
def test_generate_each_mode(restyler, room, mode):
    image, depth, edges, mask = room
    out = restyler.generate(image, depth, edges, mask, params(mode=mode))
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    assert effective_mode(mode, mask, (H, W)) == mode
    assert out.std() > 1.0  # not a constant picture
    assert not np.array_equal(out, image)
    if mode == "furniture":  # far from the furniture the photo is untouched
        assert np.array_equal(out[:40], image[:40])
        assert not np.array_equal(out[70:110, 30:90], image[70:110, 30:90])
    if mode == "keep_furniture":  # the furniture is kept, the rest repainted
        assert np.array_equal(out[60:120, 20:100], image[60:120, 20:100])
        assert not np.array_equal(out[:40], image[:40])


def test_callback_once_per_step(restyler, room):
    image, depth, edges, mask = room
    for mode in MODES:
        calls = []
        restyler.generate(image, depth, edges, mask, params(mode=mode, steps=4),
                          callback=lambda step, total: calls.append((step, total)))
        assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)], mode


def test_same_seed_same_bytes_other_seed_differs(restyler, room):
    image, depth, edges, mask = room
    for mode in ("full", "furniture"):
        a = restyler.generate(image, depth, edges, mask, params(mode=mode, seed=42))
        b = restyler.generate(image, depth, edges, mask, params(mode=mode, seed=42))
        c = restyler.generate(image, depth, edges, mask, params(mode=mode, seed=43))
        assert a.tobytes() == b.tobytes()
        assert a.tobytes() != c.tobytes()


def test_empty_mask_runs_as_full(restyler, room):
    image, depth, edges, _ = room
    full = restyler.generate(image, depth, edges, None, params(mode="full", seed=7))
    fallback = restyler.generate(image, depth, edges, np.zeros((H, W), np.uint8), params(mode="furniture", seed=7))
    assert fallback.tobytes() == full.tobytes()


def test_controls_and_prompt_steer_the_result(restyler, room):
    image, depth, edges, mask = room
    base = restyler.generate(image, depth, edges, mask, params(seed=1))
    assert not np.array_equal(base, restyler.generate(image, 255 - depth, edges, mask, params(seed=1)))
    assert not np.array_equal(base, restyler.generate(image, depth, edges, mask, params(seed=1, style="boho")))
    assert not np.array_equal(base, restyler.generate(image, depth, edges, mask, params(seed=1, canny_scale=0.0)))


def test_float_depth_of_another_size_is_accepted(restyler, room):
    image, depth, edges, mask = room
    as_uint8 = restyler.generate(image, depth, edges, mask, params(seed=3))
    as_float = restyler.generate(image, (depth.astype(np.float32) / 255.0)[None], edges, mask, params(seed=3))
    assert as_float.shape == as_uint8.shape
    small = restyler.generate(image, np.zeros((1, 32, 32), np.float32), edges, mask, params(seed=3))
    assert small.shape == (H, W, 3)
    half_mask = restyler.generate(image, depth, edges, mask[::2, ::2], params(seed=3, mode="furniture"))
    assert half_mask.shape == (H, W, 3) and not np.array_equal(half_mask, small)


def test_bad_inputs_are_refused(restyler, room):
    image, depth, edges, mask = room
    with pytest.raises(ValueError, match="multiples of 8"):
        restyler.generate(image[:100], depth[:100], edges[:100], mask[:100], params())
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        restyler.generate(image[..., 0], depth, edges, mask, params())
    with pytest.raises(ValueError, match=r"depth must be a \[H, W\] map"):
        restyler.generate(image, np.zeros((2, 3, 4, 5)), edges, mask, params())


def test_pipelines_share_the_weights(restyler):
    (pipe, inpaint), (fast, fast_inpaint) = restyler.pipes["uni_pc"], restyler.pipes["lcm"]
    assert inpaint.unet is pipe.unet and fast_inpaint.unet is fast.unet
    assert fast.unet is not pipe.unet  # LCM-LoRA fused into its own copy
    for other in (inpaint, fast, fast_inpaint):
        assert other.controlnet is pipe.controlnet and other.vae is pipe.vae
        assert other.text_encoder is pipe.text_encoder
    assert len({id(p.scheduler) for p in (pipe, inpaint, fast, fast_inpaint)}) == 4
    assert type(pipe.scheduler).__name__ == "UniPCMultistepScheduler"
    assert type(fast.scheduler).__name__ == "LCMScheduler"
    assert pipe.safety_checker is None


def test_load_names_missing_folders(tmp_path):
    (tmp_path / "sd").mkdir()
    with pytest.raises(FileNotFoundError, match="lacks controlnet_depth, controlnet_canny"):
        Restyler.load(tmp_path, "cpu", torch.float32)


def test_prompts_are_cut_between_phrases_to_fit_clip(restyler):
    tokenizer = restyler.pipes["uni_pc"][0].tokenizer
    fitted = fit_prompt(tokenizer, "a modern living room, " + ", ".join(["clean lines"] * 40))
    assert fitted.startswith("a modern living room") and not fitted.endswith(",")
    assert len(tokenizer(fitted).input_ids) <= tokenizer.model_max_length
    assert fit_prompt(tokenizer, "a boho kitchen") == "a boho kitchen"


def test_raising_from_the_callback_stops_the_loop_at_that_step(restyler, room):
    image, depth, edges, mask = room
    seen = []

    def stop_at_two(step, total):
        seen.append(step)
        if step == 2:
            raise cancellation.GenerationCancelled(f"cancelled at step {step} of {total}")

    with pytest.raises(cancellation.GenerationCancelled, match="step 2 of 6"):
        restyler.generate(image, depth, edges, mask, params(steps=6), callback=stop_at_two)
    assert seen == [1, 2]


def test_cancellation_flags_by_key():
    key, other = cancellation.new_key(), cancellation.new_key()
    assert not cancellation.is_cancelled(key)
    cancellation.cancel(key)
    assert cancellation.is_cancelled(key) and not cancellation.is_cancelled(other)
    cancellation.clear(key)
    cancellation.clear(key)  # clearing twice is harmless: both sides clear
    assert not cancellation.is_cancelled(key)
    with pytest.raises(ValueError, match="CANCEL_KEY"):
        cancellation.cancel("../../etc/passwd")
