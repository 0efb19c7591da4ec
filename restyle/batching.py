"""Dynamic batching inside a python model: the requests Triton's batcher hands one execute()
go through onnxruntime as one batch, and each gets its own slice of the outputs back."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from restyle.onnx_model import OnnxModel


def run_batched(model: OnnxModel,
                requests: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray] | ValueError]:
    """One run for all well-formed requests, concatenated along axis 0 (each may carry a batch
    of its own), outputs split back in request order. A malformed request gets its ValueError
    in its place and never reaches the run, so it cannot fail the others."""
    errors: dict[int, ValueError] = {}
    for i, inputs in enumerate(requests):
        try:
            model.check(inputs)
        except ValueError as exc:
            errors[i] = exc
    good = [i for i in range(len(requests)) if i not in errors]
    answers: dict[int, dict[str, np.ndarray]] = {}
    if good:
        joined = {name: np.concatenate([requests[i][name] for i in good]) for name in model.input_names}
        ends = np.cumsum([len(requests[i][model.input_names[0]]) for i in good])[:-1]
        parts = {name: np.split(value, ends) for name, value in model(**joined).items()}
        answers = {i: {name: split[k] for name, split in parts.items()} for k, i in enumerate(good)}
    return [errors[i] if i in errors else answers[i] for i in range(len(requests))]
