"""Loads every module in tests/fixtures/ as a pytest plugin, so areas keep their fixtures apart."""

import os
from pathlib import Path

# Services the tests start keep the fixed back-end rule: the timed back-end probe (20 s to minutes on a busy
# machine, once per machine and model) is tested on its own in tests/test_edge_backend_probe.py.
os.environ.setdefault("HYBRIDCAM_EDGE_PROBE_S", "0")

pytest_plugins = sorted(
    f"tests.fixtures.{path.stem}"
    for path in (Path(__file__).parent / "fixtures").glob("*.py")
    if path.stem != "__init__"
)
