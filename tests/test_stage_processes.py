"""How the stage models' processes run on the CPU: one thread budget for torch and onnxruntime, no
spinning, torch's tensors on huge pages — in the real server's stubs and in onnxruntime sessions."""
import psutil

from restyle.onnx_model import OnnxModel
from restyle.server import server_env, stage_process_env
from restyle.settings import get_settings


def test_every_stub_runs_with_the_stage_environment(triton_server):
    stubs = [p for p in psutil.Process(triton_server.pid).children(recursive=True)
             if "triton_python_backend_stub" in p.name()]
    assert len(stubs) >= 10  # every python model of the tiny profile
    wanted = {name: server_env()[name] for name in stage_process_env()}  # an operator's own setting wins
    for stub in stubs:
        env = stub.environ()
        assert {name: env.get(name) for name in wanted} == wanted, stub.cmdline()[1]


def test_an_operator_setting_wins(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    env = server_env()
    assert (env["OMP_NUM_THREADS"], env["THP_MEM_ALLOC_ENABLE"]) == ("3", "0")


def test_onnx_sessions_follow_the_thread_budget(tiny_artifacts, monkeypatch):
    graph = get_settings().artifacts_dir / "tiny" / "detection" / "model.onnx"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    options = OnnxModel(graph).session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"

    monkeypatch.delenv("OMP_NUM_THREADS")  # outside the server: onnxruntime's own defaults
    options = OnnxModel(graph).session.get_session_options()
    assert options.intra_op_num_threads == 0
