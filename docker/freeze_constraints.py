"""Write docker/constraints.txt: the exact versions installed here of hybridcam's dependency closure.

`pip freeze` lists everything in the environment (test tools, editors' plug-ins, ...); the images
need only what `pip install ".[local]"` pulls in. This walks the requirements of pyproject.toml
(plus the extras named on the command line) through the installed distributions' metadata,
following markers and extras the way pip would on this Python, and pins each one found.

    python docker/freeze_constraints.py              # rewrite docker/constraints.txt
    python docker/freeze_constraints.py --check      # exit 1 when the file is out of date
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parent.parent
CONSTRAINTS = REPO_ROOT / "docker" / "constraints.txt"
IMAGE_EXTRAS = ("local",)
HEADER = (
    "# Exact versions for the images (pip --constraint), generated from the tested environment by\n"
    "#   python docker/freeze_constraints.py\n"
    "# Only hybridcam's dependency closure (with the 'local' extra) is listed. Do not edit by hand.\n"
)


def project_requirements(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    names = list(project["dependencies"])
    for extra in extras:
        names += project.get("optional-dependencies", {}).get(extra, [])
    return [Requirement(name) for name in names]


def applies(requirement: Requirement, extras: frozenset[str]) -> bool:
    if requirement.marker is None:
        return True
    environment = default_environment()
    return any(requirement.marker.evaluate({**environment, "extra": extra}) for extra in (extras or {""}))


def dependency_closure(roots: list[Requirement], conflicts: list[str] | None = None) -> dict[str, str]:
    """canonical name -> 'Name==version' for every installed distribution the roots need.

    An installed version that a requirement on the way excludes is appended to ``conflicts``:
    pip would refuse that pin in the image build.
    """
    pinned: dict[str, str] = {}
    pending: list[tuple[Requirement, frozenset[str]]] = [(r, frozenset()) for r in roots]
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        requirement, parent_extras = pending.pop()
        if not applies(requirement, parent_extras):
            continue
        key = canonicalize_name(requirement.name)
        wanted_extras = frozenset(requirement.extras)
        if (key, wanted_extras) in seen:
            continue
        seen.add((key, wanted_extras))
        try:
            dist = distribution(requirement.name)
        except PackageNotFoundError:
            sys.exit(f"{requirement.name} is required but not installed here: install the project first (pip install -e '.[local]').")
        pinned[key] = f"{dist.metadata['Name']}=={dist.version}"
        if conflicts is not None and requirement.specifier and not requirement.specifier.contains(dist.version, prereleases=True):
            conflicts.append(f"installed {pinned[key]} does not satisfy the requirement {requirement}")
        for child in dist.requires or []:
            pending.append((Requirement(child), wanted_extras))
    return pinned


def render(conflicts: list[str] | None = None) -> str:
    closure = dependency_closure(project_requirements(IMAGE_EXTRAS), conflicts)
    return HEADER + "".join(f"{closure[key]}\n" for key in sorted(closure))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report whether the file is current")
    args = parser.parse_args()
    conflicts: list[str] = []
    text = render(conflicts)
    for conflict in conflicts:
        print(f"warning: {conflict}; the image build will fail until pyproject.toml or the environment agree")
    if args.check:
        current = CONSTRAINTS.read_text() if CONSTRAINTS.exists() else ""
        if current != text:
            print(f"{CONSTRAINTS.relative_to(REPO_ROOT)} is out of date: run python docker/freeze_constraints.py")
            return 1
        print(f"{CONSTRAINTS.relative_to(REPO_ROOT)} is current")
        return 1 if conflicts else 0
    CONSTRAINTS.write_text(text)
    print(f"wrote {CONSTRAINTS.relative_to(REPO_ROOT)}: {text.count('==')} pinned distributions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
