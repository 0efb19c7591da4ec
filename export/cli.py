"""`restyle models ...`: fetch the checkpoints, build a profile's artifacts, render the model repository."""
from pathlib import Path

import typer

from export.weights import NAMES, select
from restyle.cli import ProfileOpt, console, fail
from restyle.profiles import get_profile
from restyle.settings import get_settings

models_app = typer.Typer(help="Download checkpoints, build and render the model repository.", no_args_is_help=True)


@models_app.command("build")
def models_build(profile: str = ProfileOpt,
                 weights: Path = typer.Option(None, help="folder of local checkpoints (README: weights layout)"),
                 random_weights: bool = typer.Option(False, help="full-size architectures, random weights: speed runs only"),
                 seed: int = typer.Option(None, help="seed for random weights (default RESTYLE_SEED)")):
    """Export every model of a profile into artifacts/<profile>/ and render its configs."""
    from export.build import build

    settings = get_settings()
    try:
        prof = get_profile(profile or settings.profile)
        manifest = build(prof, settings.artifacts_dir, settings.model_repository, weights=weights,
                         random_weights=random_weights, seed=settings.seed if seed is None else seed)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    console.print(f"built profile [bold]{prof.name}[/bold] ({manifest['weights']}) into "
                  f"{settings.artifacts_dir / prof.name}; configs rendered in {settings.model_repository}")


@models_app.command("render")
def models_render(profile: str = ProfileOpt,
                  print_: bool = typer.Option(False, "--print", help="print the configs instead of writing them"),
                  model: list[str] = typer.Option(None, "--model", "-m", help="with --print: only these models")):
    """Render every config.pbtxt for a profile whose artifacts are already built."""
    from restyle.pipeline import model_specs
    from restyle.repository import render_config, render_repository

    settings = get_settings()
    try:
        prof = get_profile(profile or settings.profile)
        if print_:
            specs = [s for s in model_specs(prof) if not model or s.name in model]
            if model and len(specs) != len(set(model)):
                known = ", ".join(s.name for s in model_specs(prof))
                raise ValueError(f"unknown model in {', '.join(model)}; the repository has: {known}")
            for spec in specs:
                typer.echo(f"# {spec.name}/config.pbtxt\n{render_config(spec, prof, settings.artifacts_dir / prof.name)}")
            return
        written = render_repository(prof, settings.artifacts_dir / prof.name, settings.model_repository)
    except (ValueError, FileNotFoundError) as exc:
        fail(str(exc))
    console.print(f"rendered {len(written)} configs for profile {prof.name}")


@models_app.command("download")
def models_download(
        dir: Path = typer.Option(Path("weights"), "--dir", help="the weights folder `models build --weights` reads"),
        only: str = typer.Option(None, help=f"comma-separated parts (default all): {','.join(NAMES)}"),
        dry_run: bool = typer.Option(False, "--dry-run", help="list what would be fetched, with sizes; fetch nothing")):
    """Fetch the real checkpoints (HF_ENDPOINT, HF_TOKEN, RESTYLE_YOLO_URL); a rerun resumes."""
    from export.download import DownloadError, download, plan

    settings = get_settings()
    try:
        parts = select(only.split(",") if only else None)
        if dry_run:
            _print_plan(plan(parts, dir, yolo_url=settings.yolo_url), dir)
            return
        download(parts, dir, yolo_url=settings.yolo_url)
    except (ValueError, DownloadError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        console.print("interrupted: finished files are kept, the same command goes on from there")
        raise typer.Exit(130) from None
    console.print(f"weights complete in {dir}; next: restyle models build --profile t4 --weights {dir}",
                  soft_wrap=True)


def _print_plan(planned, root: Path) -> None:
    from export.download import human_size

    for part in dict.fromkeys(p.part for p in planned):
        files = [p for p in planned if p.part is part]
        typer.echo(f"{part.name}: {files[0].source} -> {part.path(root)}/")
        for p in files:
            typer.echo(f"  {'present' if p.present else human_size(p.size):>10}  {p.file}")
    todo = [p for p in planned if not p.present]
    typer.echo(f"would fetch {len(todo)} files, {human_size(sum(p.size or 0 for p in todo))}, into {root}"
               + (f" ({len(planned) - len(todo)} already there)" if len(todo) < len(planned) else ""))
