"""The graph in restyle/pipeline.py keeps to what Triton 2.51's ensemble scheduler needs."""
from restyle.pipeline import RESULT_OUTPUTS, steps


def test_no_ensemble_output_is_also_an_intermediate():
    # Triton prunes a step once every output it maps is an unrequested ensemble output; if a
    # later step consumed one of them, a request naming a subset of outputs would deadlock.
    results = {t.name for t in RESULT_OUTPUTS}
    consumed = {tensor for step in steps() for tensor in step.inputs.values()}
    assert not results & consumed


def test_every_result_output_is_made_once():
    made = [tensor for step in steps() for tensor in step.outputs.values()]
    assert len(made) == len(set(made))
    assert {t.name for t in RESULT_OUTPUTS} <= set(made)
