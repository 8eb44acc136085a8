"""The hello project with a remote store (S3 or a store host), for the e2e store tests."""

from __future__ import annotations

import re
from pathlib import Path

from tests.e2e.conftest import Project


class StoreProject(Project):
    """A Project whose transfer mode can be switched, with what the deployer cached."""

    def transfer(self, mode: str) -> None:
        config = self.directory / ".deliver/edeliver.toml"
        text = re.sub(r'(?m)^mode = "(push|pull)"$', f'mode = "{mode}"', config.read_text())
        config.write_text(text)

    def cached(self) -> list[Path]:
        """Tarballs the deployer downloaded from the store (a push does, a pull never)."""
        return list((self.directory / ".deliver/cache").rglob("*.tar.gz"))

    def uploads(self, version: str) -> dict[str, bool]:
        return {
            n.name: (n.root / ".edeliver/uploads" / f"hello-{version}.tar.gz").exists()
            for n in self.fleet.nodes
        }

    def push_runs_one_verified_copy(self, old: str, new: str) -> None:
        """From `old` everywhere, a push of `new`: one local copy, uploaded to every node."""
        self.ensure_all_on(old)
        self.transfer("push")
        try:
            result = self.deploy("all", new)
        finally:
            self.transfer("pull")
        assert result.returncode == 0, result.stdout + result.stderr
        assert self.running() == dict.fromkeys(self.fleet.names, new)
        assert [p.name for p in self.cached()] == [f"hello-{new}.tar.gz"]
