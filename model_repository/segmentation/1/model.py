"""SAM2 prompted with the detector's boxes -> the furniture mask (the union of the furniture objects' masks)."""
from restyle.segmentation import Segmenter
from restyle.triton_adapter import StageModel


class TritonPythonModel(StageModel):
    def setup(self):
        self.segmenter = Segmenter(self.artifacts / "segmentation" / "sam2.pt", device=self.profile.device)

    def run(self, inputs):
        orig_h, orig_w, work_h, work_w = inputs["SIZES"].tolist()
        boxes = inputs["BOXES"] * (work_w / orig_w)  # boxes come in photo pixels
        _, furniture_mask = self.segmenter.segment(inputs["IMAGE"], boxes, inputs["FURNITURE"])
        return {"FURNITURE_MASK": furniture_mask}
