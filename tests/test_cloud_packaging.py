"""The Lambda zip: the layout its handler string names, importable from the zip alone (no source tree)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from cloud.packaging import build_lambda_zip

HANDLER = "detector_lambda.handler.lambda_handler"  # as the template's DetectorFunction names it


def test_the_code_zip_holds_the_package_and_the_shared_schema(tmp_path: Path) -> None:
    path = build_lambda_zip(tmp_path / "code.zip", with_dependencies=False, build_dir=tmp_path)
    names = zipfile.ZipFile(path).namelist()
    assert {"detector_lambda/__init__.py", "detector_lambda/handler.py", "detector_lambda/pipeline.py",
            "shared/__init__.py", "shared/schemas.py", "shared/errors.py"} <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.startswith(("tests/", "services/", "cloud/"))]
    again = build_lambda_zip(tmp_path / "again.zip", with_dependencies=False, build_dir=tmp_path)
    assert again.read_bytes() == path.read_bytes()  # deterministic: same code, same bytes, same S3 key

    # The handler string resolves from the zip itself, as the Lambda runtime resolves it.
    module, _, function = HANDLER.rpartition(".")
    probe = (f"import sys; sys.path.insert(0, {str(path)!r}); import importlib; m = importlib.import_module({module!r}); "
             f"assert callable(getattr(m, {function!r})); print(m.__file__)")
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                               cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1"})
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().startswith(str(path))
