"""A tiny sweep file for the driver tests: LeNet-5 on digits, a few widths, a few steps.

arg (comma-separated key=value):
  steps=N    training steps per trial (8); the kill tests make trials long enough to be killed
  data=D     mesh.data (1; -1 spreads the batch over every device, the multi-process test)
  n=K        the first K of the widths 0.5, 0.75, 1.0, 1.25, 1.5, 1.75 (3)
  search=K   a random search of K trials over the width instead of the grid (0: the grid)
  size=S     data.image_size (32; LeNet-5 refuses 35: the dry-run and failure tests)
"""

from cnnx.config_schema import base_config
from configs.common import digits_data, parse_arg

WIDTHS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def get_sweep(arg=None):
    a = parse_arg(arg, steps=8, data=1, n=3, search=0, size=32)
    c = base_config()
    c.model.name = "lenet5"
    digits_data(c, shuffle_buffer=512)
    c.data.image_size = a.size
    c.data.eval_split = "test[:120]"
    c.optim.base_lr = 0.4
    c.train.batch_size = 32
    c.train.num_steps = a.steps
    c.train.log_every_steps = 4
    c.eval.batch_size = 40
    c.eval.every_steps = 100_000
    c.ckpt.every_steps = 4
    c.ckpt.asynchronous = False
    c.mesh.data = a.data
    options = {"metric": "eval/top1", "mode": "max"}
    if a.search:
        space = {"model.width_mult": {"low": 0.5, "high": 1.5}}
        search = {"space": space, "sampler": "random", "n_trials": a.search, "seed": 0}
        return c, [], {**options, **search}
    widths = WIDTHS[: a.n]
    trials = [{"model.width_mult": w, "_width": w} for w in widths]
    return c, trials, options
