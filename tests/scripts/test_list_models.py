"""scripts/list_models.py prints the registry."""

import pytest

from tests.analysis.scripts import load_script


def _script():
    return load_script("list_models")


def test_lists_matching_models(capsys):
    assert _script().main(["--models=resnet5*"]) == 0
    out = capsys.readouterr().out
    assert "resnet50 " in out and "25,557,032" in out and "torchvision:resnet50" in out
    assert "resnet18 " not in out


def test_no_match_is_an_error(capsys):
    assert _script().main(["--models=nothing*"]) == 1
    assert "no model matches 'nothing*'" in capsys.readouterr().err


def test_family_filters_and_an_unknown_family_lists_them(capsys):
    assert _script().main(["--family=efficientnet"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_b0 " in out and "resnet50 " not in out
    assert _script().main(["--family=foo"]) == 1
    err = capsys.readouterr().err
    assert "no family 'foo'" in err and "resnet, resnet_cifar" in err and "efficientnet" in err


def test_positional_pattern_is_refused(capsys):
    with pytest.raises(SystemExit) as e:
        _script().main(["resnet*"])
    assert e.value.code == 2 and "every input is a --flag" in capsys.readouterr().err
