"""docs/RELIABILITY.md matches the tests: each test it cites exists; each fault test is cited."""

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = (REPO / "docs" / "RELIABILITY.md").read_text()
CITATION = re.compile(r"`(tests/test_\w+\.py)::(\w+)(?:\[([^\]]+)\])?`")
# The fault suite: each of its tests proves a row of the doc.
FAULT_MODULES = [
    "tests/test_reliability_cli.py",
    "tests/test_damage_derived.py",
    "tests/test_damage_bookkeeping.py",
    "tests/test_damage_folders.py",
    "tests/test_interruptions.py",
    "tests/test_determinism.py",
    "tests/test_security.py",
]


def functions_in(module: str) -> set[str]:
    """The test functions defined in `module`."""
    tree = ast.parse((REPO / module).read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }


CITED = CITATION.findall(DOC)


@pytest.mark.parametrize(
    "module, name, case", CITED, ids=[f"{m}::{n}[{c}]" if c else f"{m}::{n}" for m, n, c in CITED]
)
def test_every_cited_test_exists(module, name, case):
    assert name in functions_in(module)
    if case:  # a parametrized case: its id is written out in the test module
        assert f'"{case}"' in (REPO / module).read_text()


@pytest.mark.parametrize("module", FAULT_MODULES)
def test_every_fault_test_is_cited(module):
    cited = {name for cited_module, name, _ in CITED if cited_module == module}
    assert functions_in(module) - cited == set()


def test_every_fault_case_is_cited():
    from test_reliability_cli import FAULTS

    cases = {case for module, _, case in CITED if module == "tests/test_reliability_cli.py"}
    assert {fault.name for fault in FAULTS} - cases == set()
