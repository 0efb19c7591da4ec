"""Build everything a profile serves into artifacts/<profile>/, then render the repository."""
import json
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from export.weights import check_complete
from restyle.profiles import Profile
from restyle.repository import render_repository


def _builders():
    # Imported here: each pulls in torch / ultralytics / sam2 / diffusers.
    from export.diffusion import build_diffusion
    from export.vision import (
        build_depth,
        build_detection,
        build_room_classifier,
        build_segmentation,
    )

    return {"detection": build_detection, "depth": build_depth, "segmentation": build_segmentation,
            "room_classifier": build_room_classifier, "diffusion": build_diffusion}


def build(profile: Profile, artifacts_root: Path, repository: Path, *, weights: Path | None = None,
          random_weights: bool = False, seed: int = 1234) -> dict:
    """Export every model of the profile; return the manifest (also written as manifest.json)."""
    if profile.model_size == "full" and weights is None and not random_weights:
        raise ValueError(f"profile '{profile.name}' serves the full-size models: pass --weights DIR "
                         "(get one with `restyle models download`) or --random-weights (speed runs only)")
    if weights is not None:
        check_complete(weights)  # every missing part named before anything is built
    out_dir = artifacts_root / profile.name
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {"profile": profile.name, "seed": seed,
                "weights": str(weights) if weights else ("random-full" if profile.model_size == "full" else "random-tiny"),
                "models": {}}
    builders = _builders()
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn())
    with Progress(*columns) as bar:
        task = bar.add_task(f"building {profile.name}", total=len(builders))
        for name, builder in builders.items():
            bar.update(task, description=f"building {profile.name}: {name}")
            manifest["models"][name] = builder(out_dir, weights=weights, size=profile.model_size, seed=seed)
            bar.advance(task)
    _check_sizes(profile, manifest["models"])
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    render_repository(profile, out_dir, repository)
    return manifest


def _check_sizes(profile: Profile, models: dict) -> None:
    """The exported graphs' fixed input sizes must be the ones the profile's configs declare."""
    built = {"detection": models["detection"]["imgsz"], "depth": models["depth"]["image_size"]}
    wanted = {"detection": profile.detection_size, "depth": profile.depth_size}
    if built != wanted:
        raise ValueError(f"exported input sizes {built} differ from profile '{profile.name}' {wanted}")
