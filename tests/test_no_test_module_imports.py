"""No module imports a test module: shared helpers live in tests/support (or a conftest.py fixture).

A test module imported by another is loaded twice under pytest (once by pytest under its own
name, once by the import), and its tests' helpers become an API nobody sees. Every Python file
of tests/ and bench/ is parsed (not imported), so this takes a fraction of a second.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("tests", "bench")


def is_test_module(dotted: str) -> bool:
    leaf = dotted.rsplit(".", 1)[-1]
    return leaf.startswith("test_") or leaf.endswith("_test")


def package_of(path: Path) -> list[str]:
    """The dotted package of a file under ROOT, as its imports see it (tests/client/x.py: tests.client)."""
    return list(path.relative_to(ROOT).parent.parts)


def imported_test_modules(source: str, package: list[str]) -> list[tuple[int, str]]:
    """(line, module) of every import, anywhere in ``source``, that targets a test_* module."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if any(map(is_test_module, a.name.split(".")))]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            if any(map(is_test_module, module.split("."))):
                found.append((node.lineno, module))
            else:
                found += [(node.lineno, f"{module}.{a.name}") for a in node.names if is_test_module(a.name)]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and any(map(is_test_module, node.args[0].value.split(".")))
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def test_no_module_imports_a_test_module() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for top in SCANNED
        for path in sorted((ROOT / top).rglob("*.py"))
        for line, module in imported_test_modules(path.read_text(encoding="utf-8"), package_of(path))
    ]
    assert not offenders, "move the helpers to tests/support:\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    ("source", "module"),
    [
        ("from tests.client.test_pilot_agent import new_site", "tests.client.test_pilot_agent"),
        ("import tests.api.test_api", "tests.api.test_api"),
        ("import tests.api.test_api as api", "tests.api.test_api"),
        ("from tests.client import test_pilot_agent", "tests.client.test_pilot_agent"),
        ("from .test_store import _task", "tests.store.test_store"),
        ("from . import test_store", "tests.store.test_store"),
        ("def f():\n    from tests.e2e.test_faults import SLOW", "tests.e2e.test_faults"),
        ("importlib.import_module('tests.e2e.test_end_to_end')", "tests.e2e.test_end_to_end"),
    ],
    ids=["from-module", "import", "import-as", "from-package", "relative", "relative-package", "nested", "importlib"],
)
def test_the_check_sees_every_form_of_import(source: str, module: str) -> None:
    assert [m for _, m in imported_test_modules(source, ["tests", "store"])] == [module]


def test_the_check_lets_helpers_and_fixtures_through() -> None:
    source = "from tests.support.pilots import submit\nfrom tests.conftest import LiveService\nimport pytest\n"
    assert imported_test_modules(source, ["tests", "client"]) == []
