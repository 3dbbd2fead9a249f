"""Build the detector Lambda's zip: handler modules, the shared schema modules and their dependencies.

Dependencies (cloud/lambda/requirements.txt) are installed for the Lambda runtime, not for this machine:
``pip install --platform manylinux2014_x86_64 --only-binary=:all: --python-version 3.12 --target``.
They are cached in build/lambda/deps-<hash> so repeated builds do not reach the package index. The zip
is deterministic (fixed timestamps, sorted entries), so unchanged code gives the same bytes and the same
S3 key. Run ``python -m cloud.packaging [--output PATH] [--no-dependencies]`` (what
cloud/lambda/package.sh and ``make package-lambda`` call).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LAMBDA_DIR = REPO_ROOT / "cloud" / "lambda"
REQUIREMENTS = LAMBDA_DIR / "requirements.txt"
HANDLER_MODULES = ("handler.py", "records.py", "detectors.py", "alerts.py", "storage.py", "config.py", "face_watch.py")
SHARED_MODULES = ("__init__.py", "schemas.py", "errors.py")
DEFAULT_BUILD_DIR = REPO_ROOT / "build" / "lambda"
ZIP_TIMESTAMP = (2020, 1, 1, 0, 0, 0)
LAMBDA_PLATFORM = ("--platform", "manylinux2014_x86_64", "--only-binary=:all:", "--python-version", "3.12",
                   "--implementation", "cp")


class PackagingError(RuntimeError):
    pass


def install_dependencies(build_dir: Path) -> Path:
    """pip-install the requirements for the Lambda runtime into a cached folder and return it."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes() + " ".join(LAMBDA_PLATFORM).encode()).hexdigest()[:12]
    target = build_dir / f"deps-{digest}"
    if (target / ".complete").exists():
        return target
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *LAMBDA_PLATFORM,
               "--target", str(target), "--upgrade", "-r", str(REQUIREMENTS)]
    print(f"installing Lambda dependencies for python3.12 x86_64 into {target}")
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
        raise PackagingError(f"pip could not install the Lambda dependencies: {' '.join(tail)}")
    (target / ".complete").write_text("ok\n")
    return target


def _add(archive: zipfile.ZipFile, source: Path, name: str) -> None:
    info = zipfile.ZipInfo(name, ZIP_TIMESTAMP)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, source.read_bytes())


def build_lambda_zip(output: Path | None = None, with_dependencies: bool = True, build_dir: Path = DEFAULT_BUILD_DIR) -> Path:
    """Write the Lambda zip and return its path (default build/lambda/detector.zip, or detector-code-only.zip)."""
    build_dir.mkdir(parents=True, exist_ok=True)
    output = output or build_dir / ("detector.zip" if with_dependencies else "detector-code-only.zip")
    entries: dict[str, Path] = {name: LAMBDA_DIR / name for name in HANDLER_MODULES}
    entries.update({f"shared/{name}": REPO_ROOT / "shared" / name for name in SHARED_MODULES})
    if with_dependencies:
        deps = install_dependencies(build_dir)
        for path in deps.rglob("*"):
            relative = path.relative_to(deps).as_posix()
            if path.is_file() and "__pycache__" not in relative and relative != ".complete" and not relative.startswith("bin/"):
                entries.setdefault(relative, path)
    temporary = output.with_suffix(".tmp")
    with zipfile.ZipFile(temporary, "w") as archive:
        for name in sorted(entries):
            _add(archive, entries[name], name)
    temporary.replace(output)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, help="zip to write (default build/lambda/detector.zip)")
    parser.add_argument("--no-dependencies", action="store_true",
                        help="only our modules (for the local moto stack, where the code never runs in Lambda)")
    args = parser.parse_args(argv)
    try:
        path = build_lambda_zip(args.output, with_dependencies=not args.no_dependencies)
    except PackagingError as error:
        print(f"package-lambda: {error}", file=sys.stderr)
        return 1
    with zipfile.ZipFile(path) as archive:
        count = len(archive.namelist())
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {count} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
