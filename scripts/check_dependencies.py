"""Check that every workspace member declares exactly the packages it imports (`make lint`).

The members are the root project (its code is `src/voxbus/cli`) and those its
`[tool.uv.workspace]` lists. For each one, deptry checks the third-party imports of its source
against its `[project] dependencies`: a package imported but not declared (or only for
development, or only there because another package needs it) and a package declared but not
imported are errors. deptry cannot tell the members apart inside the `voxbus` namespace they
all share (it sees one top-level module, `voxbus`), so this script checks those imports itself:
a member that imports `voxbus.<package>` declares the member providing it, and declares no
member it does not import.

Run: `uv run --frozen python scripts/check_dependencies.py`; exit status 1 on any finding.
"""

import ast
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from voxbus.common.constants import SERVICE_NAMES

ROOT = Path(__file__).resolve().parent.parent

# What a member imports by name at run time, which no import statement shows.
IMPORTED_BY_NAME = {
    # `voxbus up` and `voxbus serve NAME` import `voxbus.<name>.service` (voxbus.cli.main)
    "voxbus": frozenset(SERVICE_NAMES),
}


@dataclass(frozen=True)
class Member:
    name: str  # its distribution name, normalized
    pyproject: Path
    source: Path
    declared: frozenset[str]  # distribution names, normalized
    provides: frozenset[str]  # the `voxbus.<package>` packages in its source

    def imported(self) -> frozenset[str]:
        """The `voxbus.<package>` packages its source imports."""
        packages = set(IMPORTED_BY_NAME.get(self.name, ()))
        for path in self.source.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                packages.update(m.split(".")[1] for m in modules if m.startswith("voxbus."))
        return frozenset(packages)


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if match is None:
        raise ValueError(f"cannot read the name of the requirement {requirement!r}")
    return normalized(match[1])


def members() -> list[Member]:
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
    listed = sorted(path.parent for pattern in patterns for path in ROOT.glob(f"{pattern}/pyproject.toml"))
    directories = [ROOT, *listed]
    found = []
    for directory in directories:
        project = tomllib.loads((directory / "pyproject.toml").read_text())["project"]
        source = directory / "src"
        found.append(
            Member(
                name=normalized(project["name"]),
                pyproject=directory / "pyproject.toml",
                source=source,
                declared=frozenset(requirement_name(r) for r in project.get("dependencies", [])),
                provides=frozenset(init.parent.name for init in (source / "voxbus").glob("*/__init__.py")),
            )
        )
    return found


def namespace_findings(member: Member, provider: dict[str, str]) -> list[str]:
    """What `member` imports from, and declares of, the other members."""
    siblings = set(provider.values()) - {member.name}
    imported = {package for package in member.imported() if package not in member.provides}
    unknown = sorted(package for package in imported if package not in provider)
    needed = {provider[package] for package in imported if package in provider}
    where = member.pyproject.relative_to(ROOT)
    return (
        [f"{member.source.relative_to(ROOT)}: imports voxbus.{p}, which no member provides" for p in unknown]
        + [f"{where}: imports {name} but does not declare it" for name in sorted(needed - member.declared)]
        + [
            f"{where}: declares {name} but does not import it"
            for name in sorted((member.declared & siblings) - needed)
        ]
    )


def deptry(member: Member, siblings: set[str]) -> bool:
    """deptry on the member's source; sibling members are this script's to check."""
    command = [
        sys.executable,
        "-m",
        "deptry",
        str(member.source.relative_to(ROOT)),
        "--config",
        str(member.pyproject.relative_to(ROOT)),
        "--known-first-party",
        "voxbus",
        "--no-ansi",
    ]
    if siblings:
        command += ["--per-rule-ignores", "DEP002=" + "|".join(sorted(siblings))]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.stderr.write(result.stdout + result.stderr)
    return result.returncode == 0


def main() -> int:
    found = members()
    provider = {package: member.name for member in found for package in member.provides}
    ok = True
    for member in found:
        findings = namespace_findings(member, provider)
        for finding in findings:
            sys.stderr.write(finding + "\n")
        ok = deptry(member, set(provider.values()) - {member.name}) and not findings and ok
    if ok:
        sys.stdout.write(f"dependencies: all {len(found)} workspace members declare what they import\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
