"""Structure-preservation score of the result against the input; flags broken outputs."""
from restyle.quality import assess
from restyle.triton_adapter import StageModel, strings


class TritonPythonModel(StageModel):
    def run(self, inputs):
        report = assess(inputs["IMAGE"], inputs["RESTYLED"], inputs["EDGES"], inputs["DEPTH"][0])
        return {"QUALITY_SCORE": [report.score], "QUALITY_FLAGS": strings(report.flags)}
