"""Render the model repository for one profile: every config.pbtxt from the one template."""
import os
import shutil
from pathlib import Path

import jinja2

from restyle.pipeline import ModelSpec, model_specs
from restyle.profiles import Profile
from restyle.settings import REPO_ROOT

TEMPLATE = REPO_ROOT / "triton_config.pbtxt.template"
ONNX_MODELS = ("detection", "depth")


def render_config(spec: ModelSpec, profile: Profile, artifacts_dir: Path) -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    template = env.from_string(TEMPLATE.read_text())
    return template.render(spec=spec, profile=profile, artifacts_dir=artifacts_dir.resolve()) + "\n"


def _place(src: Path, dst: Path) -> None:
    """Hard-link the exported file where Triton's onnxruntime backend looks (copy across devices)."""
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def render_repository(profile: Profile, artifacts_dir: Path, repository: Path) -> list[Path]:
    """Write config.pbtxt for every model and put the profile's ONNX files in place.

    All or nothing: every config is rendered and every artifact found before a file is written."""
    sources = {name: artifacts_dir / name / "model.onnx" for name in ONNX_MODELS}
    missing = [str(src) for src in sources.values() if not src.exists()]
    if missing:
        raise FileNotFoundError(f"{', '.join(missing)} missing: run `restyle models build --profile {profile.name}` "
                                "first (nothing was rendered)")
    configs = {spec.name: render_config(spec, profile, artifacts_dir) for spec in model_specs(profile)}
    written = []
    for name, text in configs.items():
        model_dir = repository / name
        (model_dir / "1").mkdir(parents=True, exist_ok=True)
        config = model_dir / "config.pbtxt"
        config.write_text(text)
        written.append(config)
    for name, src in sources.items():
        _place(src, repository / name / "1" / "model.onnx")
    return written
