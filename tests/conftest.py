"""Loads every module in tests/fixtures/ as a pytest plugin, so areas keep their fixtures apart."""

from pathlib import Path

pytest_plugins = sorted(
    f"tests.fixtures.{path.stem}"
    for path in (Path(__file__).parent / "fixtures").glob("*.py")
    if path.stem != "__init__"
)
