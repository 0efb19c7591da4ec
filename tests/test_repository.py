"""Rendered configs: every profile parses with Triton's schema and the graph's tensors agree."""
from pathlib import Path

import pytest

from restyle.pipeline import model_specs
from restyle.profiles import PROFILES
from restyle.repository import parse_config, render_config

REPO = Path(__file__).resolve().parent.parent / "model_repository"


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
    assert t4["detection"].max_batch_size == 0 and not t4["detection"].HasField("dynamic_batching")
    assert list(t4["detection"].input[0].dims) == [1, 3, 640, 640]
    # tiny batches its python-served ONNX models: requests are grouped, each keeps its own tensor
    assert tiny["detection"].max_batch_size > 0 and list(tiny["detection"].input[0].dims) == [3, 320, 320]


def test_every_model_has_its_code_committed():
    for spec in model_specs(PROFILES["tiny"]):
        if spec.backend == "python":
            assert (REPO / spec.name / "1" / "model.py").exists(), spec.name
