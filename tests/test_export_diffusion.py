"""export/diffusion.py: seeded tiny builds, the real-weights (symlink) layout, full-size configs."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hub_mirror import released_sd

from export.diffusion import (COMPONENTS, WEIGHT_FOLDERS, build_diffusion, controlnet_config, text_config, unet_config,
                              vae_config)
from export.weights import SD
from restyle.contract import parse_request
from restyle.diffusion import Restyler


def weight_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("tiny")
    return out, build_diffusion(out, weights=None, size="tiny", seed=0)


def test_tiny_layout_and_manifest(tiny):
    out, entry = tiny
    for name in COMPONENTS:
        assert (out / "diffusion" / name).is_dir()
    sd = out / "diffusion" / "sd"
    for part in ("unet", "vae", "text_encoder"):
        assert list((sd / part).glob("*.safetensors")), part
    assert (sd / "tokenizer" / "vocab.json").is_file()
    assert json.loads((sd / "model_index.json").read_text())["safety_checker"] == [None, None]
    assert (entry["source"], entry["size"], entry["seed"], entry["weights"]) == ("random-tiny", "tiny", 0, None)
    assert entry["working_resolution"] == 256 and entry["default_steps"] == 20
    assert entry["dtype"] == "float32"
    assert entry["components"] == {n: f"diffusion/{n}" for n in COMPONENTS}
    assert 0 < entry["parameters"]["unet"] < 5_000_000
    json.dumps(entry)  # goes into manifest.json as it is


def test_same_seed_same_bytes(tiny, tmp_path):
    out, _ = tiny
    build_diffusion(tmp_path / "again", weights=None, size="tiny", seed=0)
    first, second = weight_files(out / "diffusion"), weight_files(tmp_path / "again" / "diffusion")
    assert [k for k in first if k.endswith(".safetensors")]
    assert first.keys() == second.keys()
    for name in first:
        assert first[name] == second[name], name
    build_diffusion(tmp_path / "other", weights=None, size="tiny", seed=1)
    other = weight_files(tmp_path / "other" / "diffusion")
    unet = "sd/unet/diffusion_pytorch_model.safetensors"
    assert other[unet] != first[unet]
    # the two ControlNets are not twins
    cn = "diffusion_pytorch_model.safetensors"
    assert first[f"controlnet_depth/{cn}"] != first[f"controlnet_canny/{cn}"]


def test_rebuild_replaces_in_place(tmp_path):
    build_diffusion(tmp_path, weights=None, size="tiny", seed=0)
    (tmp_path / "diffusion" / "sd" / "stale.txt").write_text("old")
    build_diffusion(tmp_path, weights=None, size="tiny", seed=0)
    assert not (tmp_path / "diffusion" / "sd" / "stale.txt").exists()


def fake_weights(tiny_out: Path, root: Path) -> Path:
    """A --weights folder whose diffusion parts are the tiny build: SD in its released layout
    (model_index.json, feature extractor, tokenizer files), the others linked as they are."""
    root.mkdir()
    for part, name in WEIGHT_FOLDERS.items():
        if part is SD:
            released_sd(tiny_out / "diffusion" / name, part.path(root))
        else:
            part.path(root).symlink_to(tiny_out / "diffusion" / name, target_is_directory=True)
    return root


def test_weights_are_symlinked_and_load(tiny, tmp_path):
    out, _ = tiny
    weights = fake_weights(out, tmp_path / "weights")
    served = tmp_path / "artifacts"
    entry = build_diffusion(served, weights=weights, size="full", seed=5)
    assert entry["source"] == "weights" and entry["weights"] == str(weights.resolve())
    assert entry["working_resolution"] == 512
    assert entry["sources"]["controlnet_depth"]["hub_repo"] == "lllyasviel/control_v11f1p_sd15_depth"
    for part, name in WEIGHT_FOLDERS.items():
        link = served / "diffusion" / name
        assert link.is_symlink() and link.resolve() == part.path(weights).resolve()
    # nothing copied: only links under diffusion/
    assert [p for p in (served / "diffusion").rglob("*") if not p.is_symlink()] == []

    restyler = Restyler.load(served / "diffusion", "cpu", torch.float32)
    image = np.full((64, 64, 3), 128, np.uint8)
    depth = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
    edges = np.zeros((64, 64), np.uint8)
    params = parse_request(style="japandi", room_type="bedroom", steps=2, seed=3)
    got = restyler.generate(image, depth, edges, None, params)
    direct = Restyler.load(out / "diffusion", "cpu", torch.float32).generate(image, depth, edges, None, params)
    assert got.shape == (64, 64, 3) and got.tobytes() == direct.tobytes()


def test_missing_weights_folder_is_named_with_its_download(tiny, tmp_path):
    out, _ = tiny
    weights = fake_weights(out, tmp_path / "weights")
    (weights / "control_v11p_sd15_canny").unlink()
    with pytest.raises(FileNotFoundError) as err:
        build_diffusion(tmp_path / "a", weights=weights, size="full", seed=0)
    message = str(err.value)
    assert "control_v11p_sd15_canny/ is missing" in message
    assert f"restyle models download --dir {weights.resolve()} --only controlnet" in message
    assert "stable-diffusion-v1-5/" not in message and "depth" not in message
    assert not (tmp_path / "a").exists()  # nothing half-built


def test_unknown_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="size must be one of tiny, full, got 'huge'"):
        build_diffusion(tmp_path, weights=None, size="huge", seed=0)


def test_full_size_configs_are_sd15():
    """Full-size architecture, built on the meta device: configs and shapes, no weights in memory."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    u = unet_config("full")
    assert u["block_out_channels"] == (320, 640, 1280, 1280) and u["cross_attention_dim"] == 768
    assert u["attention_head_dim"] == 8 and u["sample_size"] == 64
    with torch.device("meta"):
        unet = UNet2DConditionModel(**u)
        controlnet = ControlNetModel.from_unet(unet, load_weights_from_unet=False)
        vae = AutoencoderKL(**vae_config("full"))
        text = CLIPTextModel(CLIPTextConfig(**text_config("full", 49408, 49406, 49407)))
    # the published SD1.5 / ControlNet v1.1 / CLIP ViT-L/14 parameter counts
    assert unet.num_parameters() == 859_520_964
    assert controlnet.num_parameters() == 361_279_120
    assert vae.num_parameters() == 83_653_863
    assert text.num_parameters() == 123_060_480
    assert 2 ** (len(vae.config.block_out_channels) - 1) == 8


def test_tiny_configs_match_each_other():
    u, c, v = unet_config("tiny"), controlnet_config("tiny"), vae_config("tiny")
    assert c["block_out_channels"] == u["block_out_channels"] == (32, 64)
    assert c["cross_attention_dim"] == u["cross_attention_dim"] == 32
    # control images at pixel size must land on the latent grid: same /8 as the VAE
    assert 2 ** (len(c["conditioning_embedding_out_channels"]) - 1) == 2 ** (len(v["block_out_channels"]) - 1) == 8
    assert u["sample_size"] * 8 == 256


def test_full_random_path_with_tiny_shapes(tmp_path, monkeypatch):
    """The size="full" random path (fp16, ControlNets from the UNet, speed-only note), run with the
    tiny shapes swapped in: the real full build is ~1.4 B parameters, too big for CI."""
    from safetensors import safe_open

    import export.diffusion as ed

    for name in ("unet_config", "vae_config"):
        tiny_config = getattr(ed, name)
        monkeypatch.setattr(ed, name, lambda size, f=tiny_config: f("tiny"))
    monkeypatch.setattr(ed, "text_config", lambda size, *a, f=ed.text_config: f("tiny", *a))
    entry = build_diffusion(tmp_path, weights=None, size="full", seed=0)
    assert (entry["source"], entry["dtype"], entry["working_resolution"]) == ("random-full", "float16", 512)
    assert "speed measurement only" in entry["note"]
    for path in ("sd/unet", "controlnet_depth", "controlnet_canny"):
        with safe_open(tmp_path / "diffusion" / path / "diffusion_pytorch_model.safetensors", "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}, path
    # ControlNet.from_unet: the encoder half starts as a copy of the UNet's
    with safe_open(tmp_path / "diffusion/sd/unet/diffusion_pytorch_model.safetensors", "pt") as u, \
            safe_open(tmp_path / "diffusion/controlnet_depth/diffusion_pytorch_model.safetensors", "pt") as c:
        assert torch.equal(u.get_tensor("conv_in.weight"), c.get_tensor("conv_in.weight"))
