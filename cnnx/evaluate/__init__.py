"""Evaluators, below the trainer: the training loop, eval.py (`cnnx.checkpoint_eval`) and
FixRes all evaluate through them.

  classification  the one classification evaluation: masked sums per batch, several models
                  (ensembles) and test-time views on device
  metrics         top-1 / top-5 / loss, per-class accuracy and the confusion matrix as sums
  views           test-time views as preprocessing ops (center, tencrop, multiscale, ...)
  plots           the confusion plot, readable at any number of classes
  progress        progress of a long pass: a bar on a terminal, log lines otherwise
"""
