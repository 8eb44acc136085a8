"""A node shell's wait for a release to come up: health polls, each waiting on the node for a
launched VM to register with epmd, until the right version runs and the health command passes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from edeliver.adapters.node.command_scripts import log_tail_script
from edeliver.adapters.node.health_scripts import Health, health_script, parse_health
from edeliver.adapters.node.node_scripts import Layout
from edeliver.adapters.node.ssh_channel import NodeConnection
from edeliver.core.domain.errors import NodeError

# Neither a VM nor its run_erl seen this long (they exist from the moment `daemon` returns
# until the VM exits): the release is not coming up.
_GONE_AFTER = 3.0
# A health poll waits on the node at most this long for the VM to register with epmd, so that
# the health command comes when the VM can answer it.
_READY_WAIT = 10.0


def poll_pauses(longest: float, first: float = 0.05) -> Iterator[float]:
    """The pauses between polls: short at first, so that a quick answer is seen at once,
    doubling up to `longest`, so that a long wait costs few polls."""
    pause = first
    while True:
        yield min(pause, longest)
        pause *= 2


class HealthWaits(NodeConnection):
    """The verify step: a release polled until it is healthy, or why not, with its log."""

    async def _wait_healthy(self, layout: Layout, version: str) -> None:
        """Poll until one VM runs `version` and the health command passes; else fail with logs."""
        loop, shells = asyncio.get_running_loop(), self._shells
        deadline = seen = loop.time()
        deadline += self.timeouts.verify
        pause = poll_pauses(shells.poll_interval)
        while True:
            # Stamped when the poll starts: under load one poll can take seconds, and a VM seen
            # by it was there at its start, not at its end.
            polled_at = loop.time()
            wait = min(_READY_WAIT, max(0.0, deadline - polled_at))
            script = health_script(layout, shells.commands, wait)
            health = parse_health(await self.script_output(script, check=False))
            impostor = health.answered_by_another_vm()
            if health.running == (version,) and health.code == 0 and impostor is None:
                return
            now = loop.time()
            seen = polled_at if health.running or health.launching else seen
            why = (
                f"current is {health.current or 'missing'}" if health.current != version
                else "no VM runs" if polled_at - seen > _GONE_AFTER
                else impostor or f"not healthy after {self.timeouts.verify:g}s" if now > deadline
                else None
            )  # fmt: skip
            if why:
                raise NodeError(await self._unhealthy(layout, version, health, why))
            await asyncio.sleep(next(pause))

    async def _unhealthy(self, layout: Layout, version: str, health: Health, why: str) -> str:
        log = await self.script_output(log_tail_script(layout), check=False)
        return (
            f"{self.name}: {version} did not come up ({why}; running: "
            f"{', '.join(health.running) or 'nothing'}); health check said:\n"
            f"{health.said or '(nothing)'}\nlog {log.strip() or '(none found)'}"
        )
