"""Data: sources by name, preprocessing ops, and sharded tf.data pipelines."""

from cnnx.data.pipeline import EvalInput, TrainInput, to_global
from cnnx.data.preprocess import PPContext
from cnnx.data.sources import Source, get_source

__all__ = ["EvalInput", "PPContext", "Source", "TrainInput", "get_source", "to_global"]
