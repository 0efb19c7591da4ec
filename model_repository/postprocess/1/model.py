"""Result back at the photo's aspect ratio, encoded as JPEG."""
import numpy as np

from restyle.imaging import encode_jpeg, restore_aspect
from restyle.triton_adapter import StageModel


class TritonPythonModel(StageModel):
    def run(self, inputs):
        orig_h, orig_w, _, _ = inputs["SIZES"].tolist()
        image = restore_aspect(inputs["RESTYLED"], (orig_h, orig_w), self.profile.max_output_side)
        return {"IMAGE_JPEG": np.frombuffer(encode_jpeg(image), dtype=np.uint8)}
