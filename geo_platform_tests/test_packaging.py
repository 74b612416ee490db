"""geo_platform installed as a normal package (a wheel, not this checkout) works:
its SQL and instance templates ship inside it."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = """
import sys
from pathlib import Path
import geo_platform
from geo_platform.instance import instance_template
from geo_platform.resources.duckdb_catalog import DuckDBCatalog
from geo_platform.settings import Profile

assert Path(geo_platform.__file__).is_relative_to(Path(sys.argv[1])), geo_platform.__file__
catalog = DuckDBCatalog(path=sys.argv[2])
catalog.upsert_collection({"id": "c", "type": "Collection"})
print(catalog.get_collection("c")["id"])
print("storage:" in instance_template(Profile.PRODUCTION, Path(sys.argv[1])))
"""


@pytest.mark.unit
def test_installed_wheel_finds_its_sql_and_instance_templates(tmp_path: Path):
    target, source = tmp_path / "site", tmp_path / "source"
    # Built from a copy: an in-tree build would leave build/ in the checkout.
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, source / name)
    shutil.copytree(REPO_ROOT / "geo_platform", source / "geo_platform")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", target, "."],
        cwd=source,
        check=True,
        capture_output=True,
    )
    assert not (target / "geo_platform_tests").exists()
    # The checkout's own folders must not be what answers: run from elsewhere, with the
    # installed copy first on the path.
    env = dict(os.environ, PYTHONPATH=str(target))
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(target), str(tmp_path / "catalog.duckdb")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["c", "True"]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.unit
def test_lib_is_plain_logic_that_imports_no_dagster_resources_or_defs():
    """``geo_platform/lib`` knows nothing of Dagster or of the backends built on it."""
    offenders = {
        str(path.relative_to(REPO_ROOT)): sorted(
            name
            for name in _imported_modules(path)
            if name.split(".")[0] == "dagster"
            or name.startswith(("geo_platform.resources", "geo_platform.defs"))
        )
        for path in (REPO_ROOT / "geo_platform" / "lib").rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}
