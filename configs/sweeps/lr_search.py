"""A sampler-driven sweep: Optuna's TPE over the learning rate and weight decay, with a budget.

    python scripts/sweep.py --sweep=configs/sweeps/lr_search.py --workdir=DIR
    python scripts/sweep.py --sweep=configs/sweeps/lr_search.py:trials=30,model=resnet18 \
        --workdir=DIR

Instead of a list of trials, `get_sweep` returns an empty list and declares ranges
(`options['space']`: dotted config key -> {'low', 'high', 'log'} or {'choices'}) and a trial
budget (`n_trials`); TPE proposes each trial from the results so far. Start the command
several times to run workers in parallel: they share the study and its budget (two workers
asking at the same instant for the last trial can both get one, so a run can end one trial
over the budget per extra worker).

arg: comma-separated key=value (`configs.common.parse_arg`): trials=N (16), model=NAME
(resnet20_cifar), steps=N (150).
Trains on scikit-learn digits at 32 px, so it runs on a CPU in minutes per trial.
"""

from cnnx.config_schema import base_config
from configs.common import parse_arg


def get_sweep(arg=None):
    a = parse_arg(arg, trials=16, model="resnet20_cifar", steps=150)
    c = base_config()
    c.model.name = a.model
    c.data.source = "digits"
    c.data.channels = 1
    c.data.image_size = 32
    c.data.train_pp = "random_crop(padding=2)|normalize"
    c.data.eval_pp = "resize|normalize"
    c.data.mean = (0.5,)
    c.data.std = (0.5,)
    c.data.cache = True
    c.data.shuffle_buffer = 2048
    c.optim.name = "sgd"
    c.optim.nesterov = True
    c.train.batch_size = 64
    c.train.num_steps = a.steps
    c.train.log_every_steps = 50
    c.eval.batch_size = 120
    c.eval.every_steps = 100_000
    c.ckpt.every_steps = 50
    space = {
        "optim.base_lr": {"low": 0.01, "high": 2.0, "log": True},
        "optim.weight_decay": {"low": 1e-5, "high": 1e-2, "log": True},
    }
    options = {
        "metric": "eval/top1",
        "mode": "max",
        "space": space,
        "sampler": "tpe",
        "n_trials": a.trials,
        "seed": 0,
    }
    return c, [], options
