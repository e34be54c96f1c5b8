"""The docstrings' and the READMEs' examples run and print what they say (on the device under
test)."""

import doctest
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

MODULES = [
    "logdomain._special",
    "logdomain._losses",
    "logdomain._states",
    "logdomain.dask",
    "logdomain.mixture",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, device):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed"


def python_blocks(path):
    text = path.read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("readme", ["README.md", "python/README.md"])
def test_readme_examples(readme, device, capsys):
    """The READMEs' Python examples run as written."""
    path = ROOT / readme
    blocks = python_blocks(path)
    assert blocks, f"no Python example in {path}"
    for code in blocks:
        exec(compile(code, str(path), "exec"), {})
    assert "Device(" in capsys.readouterr().out
