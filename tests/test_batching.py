"""Dynamic batching of the ONNX stages: run_batched on a real onnxruntime session, then the
python-served detection and depth models under concurrent requests in a real tritonserver."""
import queue
import time

import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
from onnx import TensorProto, helper

from restyle.batching import run_batched
from restyle.onnx_model import OnnxModel
from restyle.profiles import get_profile


class CountingModel(OnnxModel):
    """The real session, recording the batch size of every run it is given."""

    def __init__(self, path):
        super().__init__(path)
        self.runs: list[int] = []

    def __call__(self, **inputs):
        self.runs.append(len(inputs["x"]))
        return super().__call__(**inputs)


@pytest.fixture
def model(tmp_path) -> CountingModel:
    """x [batch,2,3] -> double = 2x [batch,2,3] and total = sum over a sample [batch]."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["double"]),
         helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=0)],
        "per_sample",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2, 3])],
        [helper.make_tensor_value_info("double", TensorProto.FLOAT, ["batch", 2, 3]),
         helper.make_tensor_value_info("total", TensorProto.FLOAT, ["batch"])],
        initializer=[helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
                     helper.make_tensor("axes", TensorProto.INT64, [2], [1, 2])])
    path = tmp_path / "per_sample.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9), path)
    return CountingModel(path)


def _samples(n: int, start: float) -> np.ndarray:
    return (start + np.arange(n * 6, dtype=np.float32)).reshape(n, 2, 3)


def _assert_answer(result, x):
    np.testing.assert_array_equal(result["double"], 2 * x)
    np.testing.assert_array_equal(result["total"], x.sum(axis=(1, 2)))


def test_requests_share_one_run_and_get_their_own_slices(model):
    xs = [_samples(1, 0), _samples(2, 100), _samples(1, 200)]  # a request may carry a batch
    results = run_batched(model, [{"x": x} for x in xs])
    assert model.runs == [4]
    for result, x in zip(results, xs):
        _assert_answer(result, x)


def test_a_bad_request_gets_its_own_error_and_the_others_still_run(model):
    good_1, good_2 = _samples(1, 0), _samples(2, 50)
    results = run_batched(model, [{"x": good_1}, {"x": np.zeros((1, 3, 3), np.float32)},
                                  {"y": good_1}, {"x": good_2}])
    assert model.runs == [3]  # the bad ones never reach the run
    _assert_answer(results[0], good_1)
    _assert_answer(results[3], good_2)
    assert isinstance(results[1], ValueError) and "x has shape [1, 3, 3]" in str(results[1])
    assert isinstance(results[2], ValueError) and "missing inputs ['x']" in str(results[2])


def test_no_run_when_every_request_is_bad(model):
    results = run_batched(model, [{"x": np.zeros((2, 3), np.float32)}])
    assert model.runs == [] and isinstance(results[0], ValueError)


TINY = get_profile("tiny")


def _counts(client, name: str) -> tuple[int, int]:
    (stats,) = client.get_inference_statistics(model_name=name, as_json=True)["model_stats"]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))  # JSON omits zeros


@pytest.mark.parametrize("name, input_name, output_name, size", [
    ("depth", "pixel_values", "depth", TINY.depth_size),
    ("detection", "images", "output0", TINY.detection_size),
])
def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(triton_server, name, input_name,
                                                                      output_name, size):
    n = 8
    rng = np.random.default_rng(0)
    # one request carries two images: Triton counts it as a batch of 2
    xs = [rng.random((2 if i == 0 else 1, 3, size, size), dtype=np.float32) for i in range(n)]
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)

    def request(x):
        tensor = grpcclient.InferInput(input_name, list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        return [tensor]

    start = _counts(client, name)[0]
    alone = [client.infer(name, request(x)).as_numpy(output_name) for x in xs]
    # the statistics of the last of these may land after its response: wait for them before the baseline
    deadline = time.monotonic() + 30
    while _counts(client, name)[0] < start + n + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    inferences, executions = _counts(client, name)
    # gRPC's async_infer returns at once, so all n are in flight before the first finishes
    answers = queue.Queue()
    for i, x in enumerate(xs):
        client.async_infer(name, request(x), callback=lambda result, error, i=i: answers.put((i, result, error)))
    together = {}
    for _ in xs:
        i, result, error = answers.get(timeout=120)
        assert error is None, error
        together[i] = result.as_numpy(output_name)
    # Triton updates the statistics just after it sends the responses: wait for the last ones
    before, deadline = (inferences, executions), time.monotonic() + 30
    while True:
        inferences, executions = (a - b for a, b in zip(_counts(client, name), before))
        if inferences >= n + 1 or time.monotonic() > deadline:
            break
        time.sleep(0.05)

    for i, (want, x) in enumerate(zip(alone, xs)):
        assert together[i].shape == want.shape and len(want) == len(x)
        np.testing.assert_allclose(together[i], want, rtol=0, atol=1e-5)
    assert inferences == n + 1
    assert executions < n, f"{n} concurrent requests ran in {executions} executions: nothing was batched"
