"""Result back at the photo's aspect ratio, encoded as JPEG; depth and edge maps; and the
detections and room type, handed out here so no ensemble output is also an intermediate."""
import numpy as np

from restyle.depth import to_map
from restyle.imaging import encode_jpeg, restore_aspect
from restyle.pipeline import HANDED_OUT, staged
from restyle.triton_adapter import StageModel


class TritonPythonModel(StageModel):
    def run(self, inputs):
        orig_h, orig_w, work_h, work_w = inputs["SIZES"].tolist()
        image = restore_aspect(inputs["RESTYLED"], (orig_h, orig_w), self.profile.max_output_side)
        return {"IMAGE_JPEG": np.frombuffer(encode_jpeg(image), dtype=np.uint8),
                "DEPTH_MAP": to_map(inputs["DEPTH"], (work_h, work_w)), "EDGE_MAP": inputs["EDGES"],
                **{t.name: inputs[staged(t.name)] for t in HANDED_OUT}}
