"""ONNX served through onnxruntime in a python model (profiles without the onnxruntime backend)."""
from restyle.triton_adapter import OnnxStageModel as TritonPythonModel  # noqa: F401
