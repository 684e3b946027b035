"""`eval.py --evaluators=tests/evaluate/extra_evaluators.py`: an evaluator the run's config did
not declare (tests/train/test_evaluators.py)."""

import ml_collections

from cnnx.evaluate.entries import evaluator


def get_config(arg=None):
    del arg
    c = ml_collections.ConfigDict()
    c.later = evaluator(data={"split": "test[:30]"}, options={"per_class": True})
    return c
