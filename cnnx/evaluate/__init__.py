"""Evaluators, below the trainer: the training loop, eval.py (`cnnx.checkpoint_eval`) and
FixRes (`cnnx.sweeps.fixres`, an entry per test size) all evaluate through them.

  entries         evaluators as config entries (`config.evals`): schema, checks, resolution
  registry        evaluator types by name (`classification`), built from resolved entries
  named_sets      the named test sets (ImageNet-V2, ReaL, A, R, Sketch) as entries, for
                  configs and for eval.py --evals on any checkpoint
  imagenet_subsets  the 200-class subsets of ImageNet-A and -R
  classification  the one classification evaluation: masked sums per batch, several models
                  (ensembles) and test-time views on device
  metrics         top-1 / top-5 / loss / ECE, ReaL label sets (no loss: undefined there),
                  per-class accuracy and the confusion matrix as sums
  views           test-time views as preprocessing ops (center, tencrop, multiscale, ...)
  plots           the confusion plot, readable at any number of classes
  progress        progress of a long pass: a bar on a terminal, log lines otherwise
"""
