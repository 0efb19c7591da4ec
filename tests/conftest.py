"""Shared fixtures: a real tritonserver on the tiny profile, a sample room photo."""
from pathlib import Path

import cv2
import pytest

from restyle import server
from restyle.profiles import get_profile
from restyle.repository import render_repository
from restyle.samples import synthetic_room
from restyle.server_ports import free_port
from restyle.settings import get_settings


@pytest.fixture(scope="session")
def tiny_artifacts() -> Path:
    """The tiny profile's artefacts, built once (seeded, so every build is the same)."""
    settings = get_settings()
    profile = get_profile("tiny")
    out = settings.artifacts_dir / "tiny"
    if not (out / "manifest.json").exists():
        from export.build import build

        build(profile, settings.artifacts_dir, settings.model_repository, seed=settings.seed)
    render_repository(profile, out, settings.model_repository)
    return out


@pytest.fixture(scope="session")
def triton_server(tiny_artifacts, tmp_path_factory):
    """A real tritonserver serving the tiny profile on free ports, for the whole session."""
    srv = server.start("tiny", free_port(), free_port(), free_port(), run_dir=tmp_path_factory.mktemp("triton"))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def room_jpeg() -> bytes:
    ok, data = cv2.imencode(".jpg", synthetic_room(640, 480)[:, :, ::-1])
    assert ok
    return data.tobytes()


@pytest.fixture(scope="session")
def tall_room_jpeg() -> bytes:
    ok, data = cv2.imencode(".jpg", synthetic_room(360, 600, seed=3)[:, :, ::-1])
    assert ok
    return data.tobytes()
