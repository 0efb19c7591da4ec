"""`restyle bench api` runs end to end and writes every key (figures are never asserted: a benchmark
is a command, not a timed test)."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from client_api.bench_api import TARGETS
from restyle_cli.main import app


def test_bench_api_writes_every_key(tmp_path):
    out = tmp_path / "api.json"
    result = CliRunner().invoke(app, ["bench", "api", "--quick", "--requests", "16", "--api-workers", "1",
                                      "--json", str(out), "--plot", str(tmp_path / "api.png")])
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert set(TARGETS) <= set(figures)
    assert all(isinstance(figures[k], (int, float)) and figures[k] == figures[k] for k in TARGETS)  # no NaN
    for c in (1, 8, 32, 64):
        assert figures[f"submit_failed_c{c}"] == 0
    # every subscriber got the terminal event, none was cut off
    assert figures["events_terminal"] == 500 and figures["events_broken"] == 0
    assert "submit_p99_ms_c32" in result.output and (tmp_path / "api.png").stat().st_size > 0
