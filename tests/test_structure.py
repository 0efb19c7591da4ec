"""The layering holds: restyle/ is the ground floor, export/ and client_api/ stand on it, restyle_cli
wires them together; the job service runs without the model stack (torch)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# package -> packages of this project it may import
ALLOWED = {
    "restyle": {"restyle"},
    "export": {"restyle", "export"},
    "client_api": {"restyle", "client_api"},
    "model_repository": {"restyle"},
    "restyle_cli": {"restyle", "export", "client_api", "restyle_cli"},
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(ALLOWED)


@pytest.mark.parametrize("package", ALLOWED)
def test_no_import_goes_up_a_layer(package):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    wrong = {str(f.relative_to(ROOT)): sorted(_imports(f) - ALLOWED[package]) for f in files}
    assert {f: w for f, w in wrong.items() if w} == {}


@pytest.mark.parametrize("module", ["client_api.main", "client_api.worker", "client_api.cli"])
def test_job_service_loads_without_torch(module):
    code = (f"import sys, {module}; from client_api.main import create_app; create_app(); "
            "heavy = sorted(m for m in ('torch', 'diffusers', 'transformers', 'ultralytics', 'sam2') if m in sys.modules); "
            "print(heavy); sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
