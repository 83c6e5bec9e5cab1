"""Print the requirements of pyproject.toml, one per line, for pip's ``-r``.

The image build installs dependencies in their own layer, before the source is
copied, so that editing code does not reinstall numpy and onnxruntime. That
layer only sees ``pyproject.toml``; this script turns it into a requirements
list. Standard library only (``tomllib``, Python 3.11+): it runs in a bare base
image before anything is installed.

    python3 pyproject_requirements.py pyproject.toml --extra cloud
    python3 pyproject_requirements.py pyproject.toml --build-system

Extras that name the project itself (``all = ["devtune[cloud,train]"]``) are
expanded in place.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import tomllib

# The distribution name and the bracketed extras at the start of a PEP 508 string.
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")


def normalize(name: str) -> str:
    """PEP 503 name normalization: ``Device_Tuning`` and ``device-tuning`` are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def collect(project: dict[str, Any], extras: list[str]) -> list[str]:
    """Base dependencies plus those of ``extras``, self-references expanded, order kept."""
    name = normalize(project["name"])
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    requirements: list[str] = []
    seen_extras: set[str] = set()

    def add(requirement: str) -> None:
        match = _REQUIREMENT.match(requirement)
        if match and normalize(match.group(1)) == name:
            for extra in (match.group(2) or "").split(","):
                expand(extra.strip())
        elif requirement not in requirements:
            requirements.append(requirement)

    def expand(extra: str) -> None:
        if not extra or extra in seen_extras:
            return
        if extra not in optional:
            raise SystemExit(f"pyproject.toml has no extra {extra!r}; it has {sorted(optional)}")
        seen_extras.add(extra)
        for requirement in optional[extra]:
            add(requirement)

    for requirement in project.get("dependencies", []):
        add(requirement)
    for extra in extras:
        expand(extra)
    return requirements


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", type=Path)
    parser.add_argument("--extra", action="append", default=[], help="an extra to include; repeatable")
    parser.add_argument(
        "--build-system", action="store_true", help="print build-system.requires instead (for a wheelhouse)"
    )
    args = parser.parse_args(argv)
    document = tomllib.loads(args.pyproject.read_text(encoding="utf-8"))
    if args.build_system:
        requirements = list(document.get("build-system", {}).get("requires", ["setuptools", "wheel"]))
    else:
        requirements = collect(document["project"], args.extra)
    sys.stdout.write("".join(f"{requirement}\n" for requirement in requirements))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
