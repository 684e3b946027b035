"""scripts/list_models.py prints the registry."""

import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _script():
    spec = importlib.util.spec_from_file_location(
        "list_models", os.path.join(REPO, "scripts", "list_models.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_lists_matching_models(capsys):
    assert _script().main(["resnet5*"]) == 0
    out = capsys.readouterr().out
    assert "resnet50 " in out and "25,557,032" in out and "torchvision:resnet50" in out
    assert "resnet18 " not in out


def test_no_match_is_an_error(capsys):
    assert _script().main(["nothing*"]) == 1
