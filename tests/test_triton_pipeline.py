"""The model repository served by a real tritonserver (tiny profile), over HTTP and gRPC."""
import io
import re
import struct
import threading
import time
import zlib

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from restyle.client import Cancelled, RestyleRequest, TritonRequestError, TritonRestyleClient, request_inputs
from restyle.pipeline import RESULT_OUTPUTS, staged

PROTOCOLS = ["http", "grpc"]


def module(protocol):
    return httpclient if protocol == "http" else grpcclient


def raw_client(server, protocol):
    if protocol == "http":
        return httpclient.InferenceServerClient(server.http_url, network_timeout=300, connection_timeout=300)
    return grpcclient.InferenceServerClient(server.grpc_url)


def tensor(mod, name, array, dtype):
    t = mod.InferInput(name, list(array.shape), dtype)
    t.set_data_from_numpy(array)
    return t


def call(server, protocol, model, inputs: dict):
    """inputs: name -> numpy array (object arrays are BYTES). Returns name -> array for every output."""
    mod = module(protocol)
    client = raw_client(server, protocol)
    result = client.infer(model, [tensor(mod, k, v, np_to_triton_dtype(v.dtype)) for k, v in inputs.items()])
    meta = client.get_model_metadata(model)
    names = [o["name"] for o in meta["outputs"]] if protocol == "http" else [o.name for o in meta.outputs]
    return {n: result.as_numpy(n) for n in names}


def text(value: str) -> np.ndarray:
    return np.array([value.encode()], dtype=object)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_stage_alone(triton_server, room_jpeg, protocol):
    srv = triton_server
    pre = call(srv, protocol, "preprocess", {"IMAGE_BYTES": np.frombuffer(room_jpeg, np.uint8), "STYLE": text("modern")})
    image, sizes = pre["IMAGE"], pre["SIZES"]
    assert image.dtype == np.uint8 and image.shape[2] == 3
    assert sizes.tolist() == [480, 640, image.shape[0], image.shape[1]]
    assert max(image.shape[:2]) == 256 and image.shape[0] % 8 == 0 and image.shape[1] % 8 == 0

    raw = call(srv, protocol, "detection", {"images": pre["DET_INPUT"]})["output0"]
    assert raw.shape[:2] == (1, 84)
    dets = call(srv, protocol, "detection_postprocess", {"RAW": raw, "LETTERBOX": pre["LETTERBOX"], "SIZES": sizes})
    n = len(dets["SCORES"])
    assert dets["BOXES"].shape == (n, 4) and len(dets["CLASSES"]) == n and len(dets["FURNITURE"]) == n
    if n:
        assert (dets["BOXES"][:, 2] <= 640 + 1).all() and (dets["BOXES"][:, 3] <= 480 + 1).all()

    # (an empty tensor comes back over HTTP as float64: restore the declared types)
    seg = call(srv, protocol, "segmentation", {"IMAGE": image, "BOXES": dets["BOXES"].astype(np.float32),
                                               "FURNITURE": dets["FURNITURE"].astype(bool),
                                               "SIZES": sizes})
    assert seg["FURNITURE_MASK"].shape == image.shape[:2]
    # random tiny YOLO weights rarely find anything: prompt SAM2 with a known box (photo pixels) too
    boxed = call(srv, protocol, "segmentation", {
        "IMAGE": image, "BOXES": np.array([[77, 269, 320, 403]], np.float32), "FURNITURE": np.array([True]),
        "SIZES": sizes})
    assert boxed["FURNITURE_MASK"].shape == image.shape[:2] and boxed["FURNITURE_MASK"].any()

    room = call(srv, protocol, "room_classification", {"IMAGE": image})
    assert 0.0 <= float(room["ROOM_CONFIDENCE"][0]) <= 1.0
    assert room["ROOM_TYPE"][0].decode()
    forced = call(srv, protocol, "room_classification", {"IMAGE": image, "ROOM_TYPE_OVERRIDE": text("kitchen")})
    assert forced["ROOM_TYPE"][0] == b"kitchen" and float(forced["ROOM_CONFIDENCE"][0]) == 1.0

    depth = call(srv, protocol, "depth", {"pixel_values": pre["DEPTH_INPUT"]})["depth"]
    assert depth.shape[0] == 1 and 0.0 <= depth.min() and depth.max() <= 1.0

    edges = call(srv, protocol, "edges", {"IMAGE": image})["EDGES"]
    assert edges.shape == image.shape[:2] and set(np.unique(edges)) <= {0, 255} and edges.any()

    restyled = call(srv, protocol, "diffusion", {
        "IMAGE": image, "DEPTH": depth, "EDGES": edges, "FURNITURE_MASK": seg["FURNITURE_MASK"],
        "ROOM_TYPE": room["ROOM_TYPE"], "STYLE": text("boho"), "SEED": np.array([7], np.int64),
        "STEPS": np.array([2], np.int32)})
    assert restyled["RESTYLED"].shape == image.shape and int(restyled["SEED_USED"][0]) == 7

    quality = call(srv, protocol, "quality", {"IMAGE": image, "RESTYLED": restyled["RESTYLED"], "EDGES": edges,
                                              "DEPTH": depth})
    assert 0.0 <= float(quality["QUALITY_SCORE"][0]) <= 1.0

    handed = {"BOXES": np.array([[1, 2, 30, 40]], np.float32), "SCORES": np.array([0.5], np.float32),
              "CLASSES": np.array([b"chair"], dtype=object), "FURNITURE": np.array([True]),
              "ROOM_TYPE": room["ROOM_TYPE"], "ROOM_CONFIDENCE": room["ROOM_CONFIDENCE"], "IS_ROOM": room["IS_ROOM"]}
    post = call(srv, protocol, "postprocess", {"RESTYLED": restyled["RESTYLED"], "SIZES": sizes, "DEPTH": depth,
                                               "EDGES": edges, **{staged(k): v for k, v in handed.items()}})
    assert Image.open(io.BytesIO(post["IMAGE_JPEG"].tobytes())).size == (640, 480)
    assert post["DEPTH_MAP"].shape == image.shape[:2] and post["DEPTH_MAP"].dtype == np.uint8
    assert (post["EDGE_MAP"] == edges).all()
    for name, value in handed.items():  # handed out unchanged, one-element strings still 1-D
        assert post[name].shape == value.shape and (post[name] == value).all(), name


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ensemble_returns_named_outputs_at_the_photos_aspect_ratio(triton_server, tall_room_jpeg, protocol):
    url = triton_server.http_url if protocol == "http" else triton_server.grpc_url
    result = TritonRestyleClient(url, protocol=protocol).infer(
        RestyleRequest(tall_room_jpeg, "scandinavian", prompt="warm light", seed=3, steps=3))
    out = Image.open(io.BytesIO(result.image_jpeg))
    assert out.format == "JPEG" and out.size == (360, 600)
    assert result.room_type and 0 <= result.room_confidence <= 1
    assert 0 <= result.quality_score <= 1 and result.seed == 3
    assert all(set(d) == {"box", "score", "class_name", "furniture"} for d in result.detections)
    assert result.depth_map is not None and result.edge_map is not None


SUBSETS = [["IMAGE_JPEG"], ["IMAGE_JPEG", "ROOM_TYPE"], ["QUALITY_SCORE"], ["BOXES", "SEED_USED"]]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("names", SUBSETS, ids=["+".join(n) for n in SUBSETS])
def test_ensemble_answers_any_subset_of_outputs(triton_server, room_jpeg, protocol, names):
    mod, client = module(protocol), raw_client(triton_server, protocol)
    result = client.infer("room_restyle", request_inputs(RestyleRequest(room_jpeg, "modern", seed=2, steps=2), mod),
                          outputs=[mod.InferRequestedOutput(n) for n in names])
    for name in names:
        assert result.as_numpy(name) is not None, name
    left_out = {t.name for t in RESULT_OUTPUTS} - set(names)
    assert all(result.as_numpy(n) is None for n in left_out)


def test_client_can_leave_out_the_maps(triton_server, room_jpeg):
    result = TritonRestyleClient(triton_server.grpc_url).infer(RestyleRequest(room_jpeg, "modern", seed=2, steps=2),
                                                               maps=False)
    assert result.depth_map is None and result.edge_map is None and result.image_jpeg[:2] == b"\xff\xd8"


def test_ensemble_metadata_names_the_contract(triton_server):
    meta = httpclient.InferenceServerClient(triton_server.http_url).get_model_metadata("room_restyle")
    assert {o["name"] for o in meta["outputs"]} == {t.name for t in RESULT_OUTPUTS}
    assert {"IMAGE_BYTES", "STYLE", "SEED", "STEPS", "PROMPT", "MODE", "ROOM_TYPE_OVERRIDE"} <= {
        i["name"] for i in meta["inputs"]}


def test_same_seed_gives_identical_bytes(triton_server, room_jpeg):
    client = TritonRestyleClient(triton_server.http_url, protocol="http")
    first = client.infer(RestyleRequest(room_jpeg, "industrial", seed=11, steps=4))
    again = client.infer(RestyleRequest(room_jpeg, "industrial", seed=11, steps=4))
    other = client.infer(RestyleRequest(room_jpeg, "industrial", seed=12, steps=4))
    assert first.image_jpeg == again.image_jpeg
    assert first.image_jpeg != other.image_jpeg


@pytest.mark.parametrize("mode", ["furniture", "keep_furniture"])
def test_inpaint_modes(triton_server, room_jpeg, mode):
    result = TritonRestyleClient(triton_server.grpc_url).infer(RestyleRequest(room_jpeg, "minimalist", seed=1, steps=2,
                                                                              mode=mode))
    assert Image.open(io.BytesIO(result.image_jpeg)).size == (640, 480)


def test_streaming_reports_every_stage_and_every_step(triton_server, room_jpeg):
    events = []
    result = TritonRestyleClient(triton_server.grpc_url).restyle(
        RestyleRequest(room_jpeg, "boho", seed=5, steps=6), on_progress=events.append)
    stages = [e.stage for e in events]
    for stage in ("preprocess", "detection", "segmentation", "room_classification", "depth", "edges", "diffusion",
                  "quality", "postprocess"):
        assert stage in stages
    steps = [e.step for e in events if e.stage == "diffusion" and e.step]
    assert steps == [1, 2, 3, 4, 5, 6]
    progress = [e.progress for e in events]
    assert progress == sorted(progress) and 0 <= progress[0] and progress[-1] < 1
    assert set(result.timings) >= {"detection", "diffusion"}
    # the stream's result is the ensemble's result
    plain = TritonRestyleClient(triton_server.grpc_url).infer(RestyleRequest(room_jpeg, "boho", seed=5, steps=6))
    assert plain.image_jpeg == result.image_jpeg


def test_cancelling_the_stream_stops_the_generation_on_the_server(triton_server, room_jpeg):
    client = TritonRestyleClient(triton_server.grpc_url)
    cancel = threading.Event()

    def cancel_at_step_two(event):
        if event.stage == "diffusion" and (event.step or 0) >= 2:
            cancel.set()

    seen = len(triton_server.log.read_bytes())  # other tests on this server cancel too
    with pytest.raises(Cancelled):
        client.restyle(RestyleRequest(room_jpeg, "modern", seed=4, steps=50), on_progress=cancel_at_step_two,
                       cancel=cancel)
    deadline, found = time.monotonic() + 60, None
    while found is None and time.monotonic() < deadline:
        log = triton_server.log.read_bytes()[seen:].decode(errors="replace")
        found = re.search(r"generation cancelled at step (\d+) of (\d+)", log)
        time.sleep(0.2)
    assert found, "diffusion_engine never reported the cancellation"
    assert 2 <= int(found[1]) < int(found[2]) == 50
    # the engine is free again and nothing of the cancelled run leaks into the next one
    assert client.restyle(RestyleRequest(room_jpeg, "modern", seed=4, steps=2)).image_jpeg[:2] == b"\xff\xd8"


def _png_header_claiming(width, height) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
            + struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND")))


def _tiny_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, "PNG")
    return buf.getvalue()


BAD_INPUTS = [
    ("empty", lambda jpeg: RestyleRequest(b"", "modern"), "empty"),
    ("not an image", lambda jpeg: RestyleRequest(b"this is not an image at all" * 10, "modern"), "image"),
    ("truncated jpeg", lambda jpeg: RestyleRequest(jpeg[: len(jpeg) // 2], "modern"), "truncated"),
    ("1x1", lambda jpeg: RestyleRequest(_tiny_png(), "modern"), "at least 32 pixels"),
    ("png bomb header", lambda jpeg: RestyleRequest(_png_header_claiming(30000, 30000), "modern"), "pixels"),
    ("unknown style", lambda jpeg: RestyleRequest(jpeg, "vaporwave-baroque"), "unknown style"),
    ("steps 0", lambda jpeg: RestyleRequest(jpeg, "modern", steps=0), "steps"),
    ("steps 10000", lambda jpeg: RestyleRequest(jpeg, "modern", steps=10000), "steps"),
    ("bad mode", lambda jpeg: RestyleRequest(jpeg, "modern", mode="sideways"), "mode"),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case,make,needle", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gets_a_clear_error_and_the_server_stays_healthy(triton_server, room_jpeg, protocol, case, make,
                                                                   needle):
    url = triton_server.http_url if protocol == "http" else triton_server.grpc_url
    client = TritonRestyleClient(url, protocol=protocol)
    with pytest.raises(TritonRequestError) as err:
        client.infer(make(room_jpeg))
    assert needle in str(err.value).lower()
    assert "internal error" not in str(err.value)
    assert triton_server.ready()


def test_next_good_request_after_bad_ones(triton_server, room_jpeg):
    client = TritonRestyleClient(triton_server.grpc_url)
    for _, make, _ in BAD_INPUTS:
        with pytest.raises(TritonRequestError):
            client.infer(make(room_jpeg))
    assert client.infer(RestyleRequest(room_jpeg, "modern", seed=1, steps=2)).image_jpeg[:2] == b"\xff\xd8"


def test_bad_input_on_the_stream_is_an_error_not_a_hang(triton_server):
    with pytest.raises(TritonRequestError, match="empty"):
        TritonRestyleClient(triton_server.grpc_url, timeout_s=60).restyle(RestyleRequest(b"", "modern"))


def test_raw_http_call_without_optional_inputs(triton_server, room_jpeg):
    """The contract a third-party client sees: only IMAGE_BYTES and STYLE are required."""
    client = httpclient.InferenceServerClient(triton_server.http_url, network_timeout=300)
    inputs = request_inputs(RestyleRequest(room_jpeg, "modern"), httpclient)
    result = client.infer("room_restyle", inputs)  # no outputs named: all of them come back
    assert result.as_numpy("IMAGE_JPEG").tobytes()[:2] == b"\xff\xd8"
    assert result.as_numpy("ROOM_TYPE")[0].decode()
    with pytest.raises(InferenceServerException):
        client.infer("room_restyle", inputs[:1])  # STYLE missing

