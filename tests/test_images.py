"""The images and compose files, checked statically (no Docker engine here): the Triton image's Python, its
python-backend stub and pyproject's requires-python agree; the service image installs no model stack; every
COPY source is in the build context; the compose files' settings are real settings."""
import re
import sys
import tomllib
from pathlib import Path

import yaml
from packaging.specifiers import SpecifierSet

from client_api.config import Settings
from restyle import server

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
REQUIRES_PYTHON = SpecifierSet(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"])
# The system Python of NGC tritonserver images, which their python backend stub is built for, from NVIDIA's
# release notes ("Ubuntu 24.04 including Python 3.12" from 24.12; Ubuntu 22.04 with Python 3.10 before).
NGC_TRITON_PYTHON = {"24.10-py3": "3.10", "24.11-py3": "3.10", "24.12-py3": "3.12"}


def arg(dockerfile: str, name: str) -> str:
    return re.search(rf"^ARG {name}=(\S+)", dockerfile, re.MULTILINE).group(1)


def test_triton_image_python_meets_requires_python_and_its_stub():
    text = (DOCKER / "Dockerfile.triton").read_text()
    tag, python = arg(text, "TRITON_TAG"), arg(text, "PYTHON_VERSION")
    assert "FROM nvcr.io/nvidia/tritonserver:${TRITON_TAG}" in text
    assert tag in NGC_TRITON_PYTHON, f"add {tag}'s Python from NVIDIA's release notes to NGC_TRITON_PYTHON"
    # the image's python3 (= the one its stub was built for) is the one the Dockerfile declares ...
    assert NGC_TRITON_PYTHON[tag] == python
    # ... and it meets requires-python; the build itself asserts the interpreter's version first
    assert REQUIRES_PYTHON.contains(python + ".0"), (python, str(REQUIRES_PYTHON))
    assert "assert v == '${PYTHON_VERSION}'" in text
    assert '-e ".[models]"' in text


def test_local_triton_stub_matches_this_python():
    # without Docker, restyle.server runs the pytriton wheel's tritonserver with the stub for this interpreter
    stub = server.WHEEL_ROOT / "python_backend_stubs" / f"{sys.version_info.major}.{sys.version_info.minor}"
    assert (stub / "triton_python_backend_stub").is_file()
    assert REQUIRES_PYTHON.contains(f"{sys.version_info.major}.{sys.version_info.minor}.0")


def test_service_image_is_the_base_install():
    text = (DOCKER / "Dockerfile.api").read_text()
    python = re.search(r"^FROM python:(\d+\.\d+)-slim", text, re.MULTILINE).group(1)
    assert REQUIRES_PYTHON.contains(python + ".0")
    assert "pip install --no-cache-dir . " in text  # no extras: pyproject's base dependencies only
    assert not re.search(r"^RUN .*(torch|\[models)", text, re.MULTILINE)
    assert re.search(r"^USER 10001$", text, re.MULTILINE)


def test_copy_sources_are_in_the_build_context():
    for dockerfile in ("Dockerfile.api", "Dockerfile.triton"):
        text = (DOCKER / dockerfile).read_text()
        allowed = {line[1:].removesuffix("/**") for line in (DOCKER / f"{dockerfile}.dockerignore").read_text()
                   .splitlines() if line.startswith("!")}
        for line in re.findall(r"^COPY (.+)$", text, re.MULTILINE):
            *sources, _dest = line.split()
            for src in sources:
                assert (ROOT / src).exists(), (dockerfile, src)
                assert src in allowed, f"{dockerfile}: {src} is excluded by {dockerfile}.dockerignore"


def _services(*files: str) -> dict:
    merged = {}
    for name in files:
        for service, spec in yaml.safe_load((DOCKER / name).read_text())["services"].items():
            merged.setdefault(service, {}).update({k: v for k, v in spec.items() if k != "environment"})
            merged[service].setdefault("environment", {}).update(spec.get("environment", {}))
    return merged


def test_compose_files_build_existing_images_with_real_settings():
    fields = {f"RESTYLE_{f.upper()}" for f in Settings.model_fields}
    gpu = _services("compose.yaml")
    for spec in gpu.values():
        if "build" in spec:
            assert (ROOT / spec["build"]["dockerfile"]).is_file()
    assert gpu["triton"]["shm_size"] and gpu["triton"]["deploy"]["resources"]["reservations"]["devices"]
    with_minio = _services("compose.yaml", "compose.minio.yaml")
    for service in ("api", "worker"):
        env = with_minio[service]["environment"]
        assert set(env) <= fields, set(env) - fields
        assert env["RESTYLE_STORAGE"] == "s3" and env["RESTYLE_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert with_minio["minio"]["image"].startswith("minio/minio:RELEASE.")  # pinned, not :latest
    assert "local/restyle" in " ".join(with_minio["minio-bucket"]["entrypoint"])
