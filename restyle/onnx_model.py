"""An exported ONNX graph run by onnxruntime: serves detection and depth where Triton's own
onnxruntime backend does not (the python-served profiles), and the tests and benchmarks."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class OnnxModel:
    """An onnxruntime session that takes and returns numpy arrays by tensor name."""

    def __init__(self, path: Path | str, device: str = "cpu"):
        import onnxruntime as ort

        available = ort.get_available_providers()
        wanted = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            # TensorRT first when the build has it: the engine is built on the serving GPU.
            wanted = [p for p in ("TensorrtExecutionProvider", "CUDAExecutionProvider")
                      if p in available] + wanted
        options = ort.SessionOptions()
        # The thread budget torch follows too (Triton's stubs get one each from restyle.server):
        # onnxruntime's default, a spinning thread per core in every session, makes the ensemble's
        # parallel branches on a small CPU wait for each other's spinners.
        if threads := int(os.environ.get("OMP_NUM_THREADS", "0")):
            options.intra_op_num_threads = options.inter_op_num_threads = threads
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=wanted)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def input_shape(self) -> list:
        return self.session.get_inputs()[0].shape

    def check(self, inputs: dict[str, np.ndarray]) -> None:
        """Raise ValueError naming the problem unless every input is there with the graph's rank
        and fixed dims (symbolic dims such as the batch take any size)."""
        missing = set(self.input_names) - set(inputs)
        if missing:
            raise ValueError(f"missing inputs {sorted(missing)}; model takes {self.input_names}")
        for arg in self.session.get_inputs():
            got = np.shape(inputs[arg.name])
            if len(got) != len(arg.shape) or any(isinstance(want, int) and want != n
                                                 for want, n in zip(arg.shape, got)):
                raise ValueError(f"{arg.name} has shape {list(got)}; the model takes {arg.shape}")

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        self.check(inputs)
        outs = self.session.run(self.output_names, {k: inputs[k] for k in self.input_names})
        return dict(zip(self.output_names, outs))
