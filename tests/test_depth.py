import numpy as np
import onnx
import pytest
import torch

from export.vision import NormalisedDepth, build_depth, load_depth
from restyle.depth import prepare, to_map
from restyle.onnx_model import OnnxModel

SEED = 3


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("depth")
    return out, build_depth(out, weights=None, size="tiny", seed=SEED)


def test_prepare_normalises_like_dpt_processor():
    white = prepare(np.full((50, 70, 3), 255, np.uint8), 96)
    black = prepare(np.zeros((50, 70, 3), np.uint8), 96)
    assert white.shape == (1, 3, 96, 96) and white.dtype == np.float32 and white.flags.c_contiguous
    assert np.allclose(white, 1.0) and np.allclose(black, -1.0)


def test_to_map():
    d = np.linspace(0, 1, 96 * 96, dtype=np.float32).reshape(1, 96, 96)
    m = to_map(d, (120, 160))
    assert m.shape == (120, 160) and m.dtype == np.uint8
    assert m[0, 0] < 5 and m[-1, -1] > 250
    assert (to_map(np.ones((1, 8, 8), np.float32), (16, 16)) == 255).all()
    bad = np.full((1, 8, 8), np.nan, np.float32)
    assert (to_map(bad, (16, 16)) == 0).all()


def test_exported_graph(built):
    out, manifest = built
    graph = onnx.load(out / "depth" / "model.onnx")
    (inp,), (outp,) = graph.graph.input, graph.graph.output
    assert (inp.name, outp.name) == ("pixel_values", "depth")
    # only the batch is dynamic: TensorRT builds for one image size
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["batch", 3, 96, 96]
    assert [d.dim_param or d.dim_value for d in outp.type.tensor_type.shape.dim] == ["batch", 96, 96]
    assert manifest["image_size"] == 96 and manifest["seed"] == SEED and manifest["file"] == "depth/model.onnx"


def _photos(n: int) -> np.ndarray:
    """n prepared photos whose raw depth ranges differ (a dark one, a bright one, ...)."""
    rng = np.random.default_rng(0)
    return np.concatenate([prepare((rng.integers(0, 256, (80, 120, 3)) * (i + 1) / n).astype(np.uint8), 96)
                           for i in range(n)])


@pytest.mark.parametrize("batch", [1, 2])
def test_onnx_matches_pytorch_and_is_normalised(built, batch):
    out, _ = built
    x = _photos(batch)
    model, size = load_depth(weights=None, size="tiny", seed=SEED)
    assert size == 96
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    got = OnnxModel(out / "depth" / "model.onnx")(pixel_values=x)["depth"]
    assert got.shape == (batch, 96, 96)
    assert np.abs(got - expected).max() < 1e-4
    for d in got:  # every map spans [0, 1] on its own
        assert d.min() == pytest.approx(0.0, abs=1e-6) and d.max() == pytest.approx(1.0, abs=1e-5)


def test_normalisation_does_not_leak_across_the_batch(built):
    x = _photos(3)
    session = OnnxModel(built[0] / "depth" / "model.onnx")
    batched = session(pixel_values=x)["depth"]
    alone = np.concatenate([session(pixel_values=x[i:i + 1])["depth"] for i in range(3)])
    np.testing.assert_allclose(batched, alone, rtol=0, atol=1e-6)
    # the photos' raw ranges differ, so one min-max over the whole batch would not give this
    model, _ = load_depth(weights=None, size="tiny", seed=SEED)
    with torch.no_grad():
        raw = model.dpt(pixel_values=torch.from_numpy(x)).predicted_depth.numpy()
    whole = (raw - raw.min()) / (raw.max() - raw.min())
    assert np.abs(whole - alone).max() > 0.01


def test_flat_prediction_gives_zeros_not_nan():
    class Flat(torch.nn.Module):
        def forward(self, pixel_values):
            return type("Out", (), {"predicted_depth": torch.full((1, 8, 8), 3.0)})()

    d = NormalisedDepth(Flat())(torch.zeros(1, 3, 8, 8))
    assert torch.isfinite(d).all() and (d == 0).all()


def test_build_is_byte_reproducible(built, tmp_path):
    out, manifest = built
    assert build_depth(tmp_path, weights=None, size="tiny", seed=SEED)["sha256"] == manifest["sha256"]
    assert build_depth(tmp_path / "other", weights=None, size="tiny", seed=SEED + 1)["sha256"] != manifest["sha256"]


def test_onnx_stage_time(built):
    import time
    out, _ = built
    model = OnnxModel(out / "depth" / "model.onnx")
    x = prepare(np.zeros((96, 96, 3), np.uint8), 96)
    model(pixel_values=x)
    start = time.perf_counter()
    model(pixel_values=x)
    assert time.perf_counter() - start < 0.5
