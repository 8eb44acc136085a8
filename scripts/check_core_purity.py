"""The import contract: edeliver.core does no I/O, so it imports no I/O library."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

FORBIDDEN = {
    "asyncssh",
    "boto3",
    "botocore",
    "typer",
    "rich",
    "subprocess",
    "socket",
    "os",
    "shutil",
    "sqlite3",
    "psycopg",
    "urllib",
    "http",
    "requests",
    "pathlib",
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def main() -> int:
    core = Path(__file__).resolve().parents[1] / "core"
    bad = {
        f"{p.name}: {', '.join(sorted(imported_roots(p) & FORBIDDEN))}"
        for p in sorted(core.glob("*.py"))
        if imported_roots(p) & FORBIDDEN
    }
    for line in sorted(bad):
        print(f"core must stay pure, but {line}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
