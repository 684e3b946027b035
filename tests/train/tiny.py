"""A tiny, fast training config shared by the training tests."""

from cnnx.config_schema import base_config
from configs.common import digits_data


def tiny_config(**overrides):
    """LeNet-5 on digits: 8-example-per-device batches, a few steps, everything on."""
    c = base_config()
    c.model.name = "lenet5"
    digits_data(c, shuffle_buffer=512)
    c.data.image_size = 32
    c.data.eval_split = "test[:100]"
    c.optim.base_lr = 0.4
    c.optim.nesterov = True
    c.schedule.name = "cosine"
    c.schedule.warmup_epochs = 0.0
    c.train.batch_size = 32
    c.train.num_steps = 12
    c.train.log_every_steps = 1
    c.eval.batch_size = 64
    c.ckpt.every_steps = 4
    c.ckpt.asynchronous = False
    for key, value in overrides.items():
        section, name = key.split(".")
        c[section][name] = value
    return c


def get_config(arg=None):
    """`train.py --config=tests/train/tiny.py`: the same config from the command line."""
    del arg
    return tiny_config()
