"""Settings for the model side (Triton, artefacts, profiles); env vars prefixed RESTYLE_."""
from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class ModelSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RESTYLE_", env_file=".env", extra="ignore")

    profile: str = "tiny"
    model_repository: Path = REPO_ROOT / "model_repository"
    artifacts_dir: Path = REPO_ROOT / "artifacts"
    run_dir: Path = REPO_ROOT / ".run"
    seed: int = 1234
    triton_host: str = "127.0.0.1"
    triton_http_port: int = 8000
    triton_grpc_port: int = 8001
    triton_metrics_port: int = 8002
    triton_start_timeout_s: float = 600.0
    debug: bool = False  # tracebacks for expected failures too (`restyle --debug`)
    # Where `restyle models download` gets YOLOv8n (not on the hub): a GitHub release asset.
    yolo_url: str = "https://github.com/ultralytics/assets/releases/download/v8.3.0/yolov8n.pt"


@lru_cache
def get_settings() -> ModelSettings:
    return ModelSettings()
