"""Encoded photo -> working-size RGB, the detector's and depth model's input tensors; checks the options early."""

from restyle.depth import prepare
from restyle.detection import letterbox
from restyle.imaging import decode_image, fit_to_working
from restyle.triton_adapter import StageModel, generation_params


class TritonPythonModel(StageModel):
    def run(self, inputs):
        # The request's edge: bad options are refused before the expensive stages run.
        generation_params(inputs)
        original = decode_image(inputs["IMAGE_BYTES"].tobytes())
        image = fit_to_working(original, self.profile.working_long_side, self.profile.size_multiple)
        det_input, lb = letterbox(image, self.profile.detection_size)
        return {"IMAGE": image, "SIZES": [*original.shape[:2], *image.shape[:2]], "DET_INPUT": det_input,
                "LETTERBOX": lb, "DEPTH_INPUT": prepare(image, self.profile.depth_size)}
