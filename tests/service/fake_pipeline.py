"""A small real pipeline for the worker mechanics tests (queue, retries, cancel, crashes).

Same signature and types as TritonRestyleClient.restyle; it really decodes the photo and
returns a new picture of the same size, walking through every stage with a short pause.
Tests where Triton itself is the subject use the real client instead (test_e2e_triton.py).
"""
from __future__ import annotations

import os
import threading

import numpy as np

from restyle.client import Cancelled, Progress, RestyleRequest, RestyleResult, TritonRequestError, TritonUnavailable
from restyle.imaging import decode_image, encode_jpeg
from restyle.pipeline import steps

STAGES = list(dict.fromkeys(step.stage for step in steps()))  # the real pipeline's stages, in order


def make(delay_s: float = 0.02, steps: int = 4, calls: list | None = None):
    def restyle(req: RestyleRequest, on_progress=None, cancel: threading.Event | None = None) -> RestyleResult:
        if calls is not None:
            calls.append(req)
        if req.prompt == "reject me":
            raise TritonRequestError("the pipeline refused this request (test)")
        if req.prompt == "triton down":
            raise TritonUnavailable("connection refused (test)")
        img = decode_image(req.image)
        n = len(STAGES) + steps - 1
        i = 0
        for stage in STAGES:
            for step in range(1, steps + 1) if stage == "diffusion" else [None]:
                if cancel is not None and cancel.wait(delay_s):
                    raise Cancelled("cancelled")
                i += 1
                if on_progress:
                    on_progress(Progress(stage, i / n, step, steps if step else None))
        out = (255 - img).astype(np.uint8)  # a visible, checkable "restyle"
        return RestyleResult(image_jpeg=encode_jpeg(out), room_type=req.room_type or "living room",
                             room_confidence=0.9, is_room=True,
                             detections=[{"box": [1.0, 2.0, 30.0, 40.0], "score": 0.8, "class_name": "couch",
                                          "furniture": True}],
                             quality_score=0.75, quality_flags=[], seed=req.seed or 0,
                             timings={s: delay_s for s in STAGES},
                             depth_map=out[:, :, 0].copy(), edge_map=img[:, :, 1].copy())
    return restyle


# for worker subprocesses: RESTYLE_WORKER_PIPELINE=fake_pipeline:restyle
restyle = make(float(os.environ.get("RESTYLE_FAKE_DELAY_S", "0.05")))
