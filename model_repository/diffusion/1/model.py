"""Request/response face of the decoupled diffusion_engine, so the ensemble (and HTTP) can use it.

The weights live once, in diffusion_engine; this model only forwards and keeps the final answer.
"""
from restyle.pipeline import DIFFUSION_OUTPUTS
from restyle.triton_adapter import StageModel, bls, outputs_of

OUTPUTS = [t.name for t in DIFFUSION_OUTPUTS]


class TritonPythonModel(StageModel):
    def run(self, inputs):
        final = {}
        for response in bls("diffusion_engine", inputs, OUTPUTS, decoupled=True):
            final.update(outputs_of(response, OUTPUTS))
        return final
