"""Raw YOLOv8 output -> boxes in the input photo's pixels, scores, COCO names, furniture flags."""
from restyle.detection import postprocess
from restyle.triton_adapter import StageModel, strings


class TritonPythonModel(StageModel):
    def run(self, inputs):
        orig_h, orig_w, work_h, work_w = inputs["SIZES"].tolist()
        found = postprocess(inputs["RAW"], inputs["LETTERBOX"], (work_h, work_w), out_scale=orig_w / work_w)
        return {"BOXES": found.boxes.reshape(-1, 4), "SCORES": found.scores, "CLASSES": strings(found.names),
                "FURNITURE": found.furniture}
