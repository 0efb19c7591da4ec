"""Canny edges of the working image; thresholds are optional inputs."""
from restyle.edges import canny
from restyle.triton_adapter import StageModel, scalar


class TritonPythonModel(StageModel):
    def run(self, inputs):
        return {"EDGES": canny(inputs["IMAGE"], scalar(inputs, "CANNY_LOW", 100), scalar(inputs, "CANNY_HIGH", 200))}
