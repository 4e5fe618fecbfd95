"""``optimizer.smc`` is a pure-torch package with its own errors (``optimizer.das`` maps them)."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from optimizer import smc
from optimizer.smc.errors import NonFiniteRewardError, SMCConfigError, SMCError


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
    return names


@pytest.mark.parametrize("path", sorted(Path(smc.__file__).parent.glob("*.py")),
                         ids=lambda p: p.name)
def test_smc_imports_only_torch_and_the_standard_library(path):
    for name in _imports(path):
        top = name.split(".")[0]
        ok = top == "torch" or name.startswith("optimizer.smc") or top in sys.stdlib_module_names
        assert ok, f"{path.name} imports {name}"


def test_errors_are_value_errors_and_name_step_and_group():
    assert issubclass(SMCConfigError, SMCError) and issubclass(SMCError, ValueError)
    err = NonFiniteRewardError(step=3, group=1)
    assert (err.step, err.group) == (3, 1)
    assert "step 3" in str(err) and "group 1" in str(err)
