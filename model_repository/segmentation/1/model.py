"""SAM2 prompted with the detector's boxes -> per-object masks and one furniture mask."""
from restyle.segmentation import Segmenter
from restyle.triton_adapter import StageModel


class TritonPythonModel(StageModel):
    def setup(self):
        self.segmenter = Segmenter(self.artifacts / "segmentation" / "sam2.pt", device=self.profile.device)

    def run(self, inputs):
        orig_h, orig_w, work_h, work_w = inputs["SIZES"].tolist()
        boxes = inputs["BOXES"] * (work_w / orig_w)  # boxes come in photo pixels
        masks, furniture_mask = self.segmenter.segment(inputs["IMAGE"], boxes, inputs["FURNITURE"])
        return {"FURNITURE_MASK": furniture_mask, "OBJECT_MASKS": masks.astype("uint8") * 255}
