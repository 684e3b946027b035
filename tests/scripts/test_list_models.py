"""scripts/list_models.py prints the registry."""

from tests.analysis.scripts import load_script


def _script():
    return load_script("list_models")


def test_lists_matching_models(capsys):
    assert _script().main(["resnet5*"]) == 0
    out = capsys.readouterr().out
    assert "resnet50 " in out and "25,557,032" in out and "torchvision:resnet50" in out
    assert "resnet18 " not in out


def test_no_match_is_an_error(capsys):
    assert _script().main(["nothing*"]) == 1
