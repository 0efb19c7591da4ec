"""README cannot drift: its commands parse with the CLI's own parser, its settings tables list exactly
the settings classes' variables (and the client commands' own), its style list is the catalogue."""
import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from client_api.config import Settings
from restyle.settings import ModelSettings
from restyle.styles import STYLES
from restyle_cli.main import app

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
CODE = "\n".join(re.findall(r"```(?:bash)?\n(.*?)```", README, re.S)).replace("\\\n", " ")
COMMANDS = [line.split("  #")[0].strip() for line in CODE.splitlines() if line.strip().startswith("restyle ")]


def test_readme_shows_commands():
    assert len(COMMANDS) >= 10


@pytest.mark.parametrize("line", COMMANDS)
def test_every_readme_command_parses(line):
    args = shlex.split(line)[1:]
    command = typer.main.get_command(app)
    for word in args:
        if not hasattr(command, "commands") or word not in command.commands:
            break
        command = command.commands[word]
    if (command.context_settings or {}).get("ignore_unknown_options"):  # a pass-through (perf-analyzer): its flags are another program's
        assert not hasattr(command, "commands"), line
        return
    # --help is eager: options are still checked against the parser, nothing is run
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, f"{line!r}: {result.output}"


def _cli_envvars() -> set[str]:
    found = set()

    def walk(cmd):
        for param in cmd.params:
            found.update(v for v in ([param.envvar] if isinstance(param.envvar, str) else param.envvar or []))
        for sub in getattr(cmd, "commands", {}).values():
            walk(sub)
    walk(typer.main.get_command(app))
    return found


def _settings_vars() -> set[str]:
    return {f"RESTYLE_{name.upper()}" for cls in (Settings, ModelSettings) for name in cls.model_fields}


def test_settings_tables_match_the_settings_both_ways():
    documented = set(re.findall(r"^\| `(RESTYLE_[A-Z0-9_]+)`(?: / `(RESTYLE_[A-Z0-9_]+)`)?", README, re.M))
    documented = {v for pair in documented for v in pair if v}
    actual = _settings_vars() | {v for v in _cli_envvars() if v.startswith("RESTYLE_")}
    assert sorted(actual - documented) == [], "variables missing from README's settings tables"
    assert sorted(documented - actual) == [], "README documents variables nothing reads"


def test_style_list_is_the_catalogue():
    row = next(line for line in README.splitlines() if line.startswith("| `STYLE` |"))
    listed = [s.strip() for s in row.split("|")[4].split(",")]
    assert listed == list(STYLES)


def test_readme_names_no_hand_copied_benchmark_figures():
    # figures live in BENCHMARKS.md, written from the bench commands' output
    assert not re.search(r"\b\d\.\d\dx\b", README)
