"""Ctrl-C (SIGINT) during training ends in one `error:` line and exit 130, not a traceback
(fault matrix case sigint_step5); the workdir resumes as after any stop."""

from cnnx import cli
from cnnx.train import loop
from tests.train.tiny import tiny_config


def test_ctrl_c_is_one_error_line_and_exit_130(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train_and_evaluate", interrupted)
    assert cli.run_training(tiny_config(), str(tmp_path)) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: interrupted (Ctrl-C)")
    assert str(tmp_path) in err[0] and "same command to resume" in err[0]
