"""Progress of a long pass (an evaluation) with tqdm: a bar on a terminal, log lines otherwise.

On a terminal (stderr a TTY) a tqdm bar, cleared when done; in a log file or under a batch
system the same tqdm line goes to the absl log every `LOG_EVERY_S` seconds, so a 50,000-image
ten-crop evaluation still says how far it is. Passes shorter than `DELAY_S` say nothing (the
periodic evaluations of a small run stay quiet). Only process 0 reports.
"""

import sys

import jax
from absl import logging

DELAY_S = 5.0  # a pass shorter than this shows nothing
LOG_EVERY_S = 30.0  # one log line per this many seconds when stderr is not a terminal
BAR_FORMAT = "{desc}: {n_fmt}/{total_fmt} batches [{elapsed}<{remaining}, {rate_fmt}]"


class _LogFile:
    """A file for tqdm that sends each refreshed line to the absl log."""

    def write(self, text: str) -> None:
        line = text.strip("\r\n ")
        if line:
            logging.info("%s", line)

    def flush(self) -> None:
        pass


def progress_bar(total: int, desc: str):
    """A tqdm bar over `total` batches: `with progress_bar(n, 'eval test') as bar: bar.update()`.

    Args:
      total: the number of batches the pass will take.
      desc: what is running, e.g. 'eval test[:1000] (10 views)'.

    Returns:
      A `tqdm.tqdm` (disabled on processes other than 0).
    """
    from tqdm import tqdm

    terminal = sys.stderr.isatty()
    return tqdm(
        total=total,
        desc=desc,
        unit="batch",
        file=sys.stderr if terminal else _LogFile(),
        bar_format=None if terminal else BAR_FORMAT,
        mininterval=0.2 if terminal else LOG_EVERY_S,
        delay=DELAY_S,
        leave=not terminal,  # a log keeps its last line; a terminal clears the bar
        dynamic_ncols=terminal,
        disable=jax.process_index() != 0,
    )
