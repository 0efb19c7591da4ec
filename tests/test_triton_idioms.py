"""Triton's own idioms, checked on a real tritonserver: a decoupled model refuses to load under a
request/response config, and says why."""
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from restyle import server
from restyle.pipeline import model_specs
from restyle.profiles import get_profile
from restyle.repository import render_config
from restyle.server_ports import free_port

REPO = Path(__file__).resolve().parent.parent / "model_repository"


def test_decoupled_model_refuses_a_request_response_config(tiny_artifacts, tmp_path):
    profile = get_profile("tiny")
    spec = next(s for s in model_specs(profile) if s.name == "diffusion_engine")
    model_dir = tmp_path / "repo" / spec.name
    (model_dir / "1").mkdir(parents=True)
    shutil.copy(REPO / spec.name / "1" / "model.py", model_dir / "1" / "model.py")
    (model_dir / "config.pbtxt").write_text(render_config(replace(spec, decoupled=False), profile, tiny_artifacts))
    with pytest.raises(server.TritonStartError, match="diffusion_engine: this model is decoupled but its "
                                                      "config.pbtxt says otherwise"):
        server.start("tiny", free_port(), free_port(), free_port(), repository=tmp_path / "repo",
                     run_dir=tmp_path / "run", timeout_s=300)
