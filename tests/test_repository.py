"""Rendered configs: every profile parses with Triton's schema and the graph's tensors agree."""
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from restyle.pipeline import model_specs
from restyle.profiles import PROFILES
from restyle.repository import render_config

REPO = Path(__file__).resolve().parent.parent / "model_repository"


def parse_config(text: str) -> model_config_pb2.ModelConfig:
    """Parse config.pbtxt text with Triton's own schema (raises on any unknown field)."""
    return text_format.Parse(text, model_config_pb2.ModelConfig())


@pytest.mark.parametrize("profile", PROFILES.values(), ids=list(PROFILES))
def test_configs_parse_and_tensors_are_consistent(profile):
    configs = {spec.name: parse_config(render_config(spec, profile, Path("/artifacts"))) for spec in model_specs(profile)}
    ensemble = configs["room_restyle"]
    assert ensemble.platform == "ensemble"
    # what each pipeline tensor is: (data type, produced by)
    known = {t.name: t.data_type for t in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        model = configs[step.model_name]
        inputs = {t.name: t for t in model.input}
        outputs = {t.name: t.data_type for t in model.output}
        for key, value in step.input_map.items():
            assert key in inputs, f"{step.model_name} has no input {key}"
            assert value in known, f"{step.model_name}.{key} reads {value} before anything produces it"
            assert known[value] == inputs[key].data_type, f"{value} type differs at {step.model_name}.{key}"
        for name, tensor in inputs.items():
            assert tensor.optional or name in step.input_map, f"{step.model_name}.{name} is required but not wired"
        for key, value in step.output_map.items():
            assert key in outputs, f"{step.model_name} has no output {key}"
            assert value not in known, f"{value} produced twice"
            known[value] = outputs[key]
    for out in ensemble.output:
        assert known.get(out.name) == out.data_type, f"ensemble output {out.name} is not produced with its type"
    # the streaming model speaks the same request and result tensors as the ensemble
    stream = configs["room_restyle_stream"]
    assert stream.model_transaction_policy.decoupled
    assert [t.name for t in stream.input] == [t.name for t in ensemble.input]
    assert {t.name for t in ensemble.output} <= {t.name for t in stream.output}



def test_profiles_differ_where_they_should():
    t4 = {s.name: parse_config(render_config(s, PROFILES["t4"], Path("/a"))) for s in model_specs(PROFILES["t4"])}
    tiny = {s.name: parse_config(render_config(s, PROFILES["tiny"], Path("/a"))) for s in model_specs(PROFILES["tiny"])}
    assert t4["detection"].backend == "onnxruntime" and tiny["detection"].backend == "python"
    assert t4["detection"].optimization.execution_accelerators.gpu_execution_accelerator[0].name == "tensorrt"
    assert t4["diffusion_engine"].instance_group[0].kind == 1  # KIND_GPU
    assert t4["preprocess"].instance_group[0].kind == 2  # KIND_CPU: no weights, no GPU memory
    # both serve detection and depth with a dynamic batch axis (implicit in dims); on t4 one
    # instance each, and TensorRT gets the profile batch 1..max_batch_size at the fixed size
    assert t4["detection"].HasField("dynamic_batching") and t4["depth"].HasField("dynamic_batching")
    assert (t4["detection"].max_batch_size, t4["depth"].max_batch_size) == (8, 4)
    assert t4["detection"].instance_group[0].count == t4["depth"].instance_group[0].count == 1
    assert list(t4["detection"].input[0].dims) == [3, 640, 640]
    assert list(t4["depth"].input[0].dims) == [3, 384, 384] and list(t4["depth"].output[0].dims) == [384, 384]
    trt = {name: dict(t4[name].optimization.execution_accelerators.gpu_execution_accelerator[0].parameters)
           for name in ("detection", "depth")}
    assert {k: trt["detection"][f"trt_profile_{k}_shapes"] for k in ("min", "opt", "max")} == {
        "min": "images:1x3x640x640", "opt": "images:8x3x640x640", "max": "images:8x3x640x640"}
    assert {k: trt["depth"][f"trt_profile_{k}_shapes"] for k in ("min", "opt", "max")} == {
        "min": "pixel_values:1x3x384x384", "opt": "pixel_values:4x3x384x384", "max": "pixel_values:4x3x384x384"}
    assert tiny["detection"].max_batch_size > 0 and list(tiny["detection"].input[0].dims) == [3, 320, 320]
    assert not tiny["detection"].HasField("optimization")  # python-served: no TensorRT


def test_every_model_has_its_code_committed():
    for spec in model_specs(PROFILES["tiny"]):
        if spec.backend == "python":
            assert (REPO / spec.name / "1" / "model.py").exists(), spec.name
