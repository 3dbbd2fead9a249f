"""The fleet console's page (static/): uploaded to the console bucket in the cloud, served by the local adapter here."""

from __future__ import annotations

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_FILES = {"index.html": "text/html; charset=utf-8", "console.js": "text/javascript; charset=utf-8",
              "console.css": "text/css; charset=utf-8"}
