"""Known vulnerabilities in the installed dependencies, from PyPI's advisories.

pip-audit asks PyPI's per-release JSON API (/pypi/NAME/VERSION/json) or OSV; from this
project's CI machines neither answers (the first is 404, OSV is not reachable), and
pip-audit then reports every package "not found" and passes. PyPI's project document
(/pypi/NAME/json) does answer, and lists the advisories of the project's latest release.
So each installed distribution is:

- VULNERABLE: it is the latest release and PyPI lists an advisory for it (fails the run);
- ok: it is the latest release and PyPI lists none;
- UNCHECKED: an older release (a dependency caps it), which this source cannot judge:
  listed with its latest release, so a cap can be reviewed; it does not fail the run.

Where pip-audit's sources are reachable, `pip-audit --strict` covers older releases too.

    python .ci/audit.py [--requirements FILE]   (default: this interpreter's packages)
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.metadata
import json
import sys
import urllib.error
import urllib.request

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

PYPI = "https://pypi.org/pypi/{}/json"
OWN = {"redact"}  # this project: not on PyPI


def installed() -> dict[str, str]:
    return {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in importlib.metadata.distributions()
        if canonicalize_name(d.metadata["Name"]) not in OWN
    }


def pinned(path: str) -> dict[str, str]:
    pins = {}
    with open(path, encoding="utf-8") as file:
        lines = list(file)
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            pins[canonicalize_name(requirement.name)] = next(iter(requirement.specifier)).version
    return pins


def advisories(name: str) -> tuple[str, list[str]]:
    """The latest release of `name` and the ids of the advisories PyPI lists for it."""
    with urllib.request.urlopen(PYPI.format(name), timeout=30) as response:
        project = json.load(response)
    found = [v["id"] for v in project.get("vulnerabilities", []) if not v.get("withdrawn")]
    return project["info"]["version"], found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requirements", help="a file of NAME==VERSION lines")
    args = parser.parse_args()
    packages = pinned(args.requirements) if args.requirements else installed()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = {name: pool.submit(advisories, name) for name in sorted(packages)}
    vulnerable, unchecked, failed = 0, 0, 0
    for name, future in futures.items():
        version = packages[name]
        try:
            latest, found = future.result()
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            print(f"ERROR       {name}=={version}: cannot read PyPI's advisories ({exc})")
            failed += 1
            continue
        if Version(version) != Version(latest):
            print(f"UNCHECKED   {name}=={version} (latest {latest})")
            unchecked += 1
        elif found:
            print(f"VULNERABLE  {name}=={version}: {', '.join(found)}")
            vulnerable += 1
        else:
            print(f"ok          {name}=={version}")
    print(
        f"{len(packages)} packages: {vulnerable} vulnerable, {unchecked} older than their "
        f"latest release (unchecked), {failed} unreadable"
    )
    return 1 if vulnerable or failed else 0


if __name__ == "__main__":
    sys.exit(main())
