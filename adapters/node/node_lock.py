"""The lock on each node (DESIGN §5): util-linux `flock` held by a holder process on the node.

A deployment takes every node's lock before it changes anything and holds it while it runs:

    P/.edeliver/lock              the file `flock`ed by the holder, for as long as it lives
    P/.edeliver/lock.json         the holder's record: deployment, environment, deployer,
                                  generation, since and last heartbeat (epoch seconds, node clock)
    P/.edeliver/lock.generation   bumped at each acquisition, under P/.edeliver/switch.lock
    P/.edeliver/switch.lock       taken by the acquisition and by every switch/start/stop

The holder is a POSIX `sh` on a channel of the deployer's SSH connection. It reads heartbeats
from its stdin and exits, releasing the lock, at the end of its stdin (the connection dropped,
the deployer was killed or closed it) or when no heartbeat came for `BOUND` seconds by the
node's clock (the deployer lost its network). So a held lock *is* a live deployer: nobody
compares clocks of different machines. A script that switches `current` or starts or stops a VM
checks, under switch.lock, that the generation it was given is still the holder's, so a stale
script can never act after a newer deployer (or the same one, reconnected) took the node.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shlex
from contextlib import suppress
from datetime import UTC, datetime

import asyncssh

from edeliver.core.domain.errors import LockHeldError, NodeError
from edeliver.core.ports import NodeClaim, NodeLockHolder

# Seconds between heartbeats, and between the holder's looks at the last one: each costs the
# node a process or two (the clock, the record's rename), for as long as a rollout lasts on
# every node of it (at 1 s and 2 s, ~5 ms of CPU per node per second: a tenth of 40 nodes'
# machine during their redeploy).
INTERVAL = 5.0
WATCH = 3
BOUND = 15  # seconds without a heartbeat after which the node's holder gives the lock up
# A stale holder of the same deployment is waited for this long: its heartbeats have stopped
# (or it would not be stale), so it is gone within BOUND seconds and a margin.
SAME_DEPLOYMENT_WAIT = BOUND + 10
_RELEASE_SECONDS = 5.0
REFUSED_BY_LOCK = 9  # the exit status of a guarded script whose generation is not the node's

# The command line of the holder: the script comes base64-encoded on the first line of stdin,
# and every later line is a heartbeat. Like REMOTE_SH it means the same in any login shell.
HOLD_SH = 'sh -c \'IFS= read -r s; eval "$(printf %s "$s" | base64 -d)"\''
q = shlex.quote


def hold_script(
    path: str, claim: NodeClaim, wait: int, expect: int | None = None, then: str = ""
) -> str:
    """Take the lock (waiting `wait` s only for a holder of the same deployment), bump the
    generation, print `locked generation=N`, then keep the record fresh on each stdin line.
    With `expect` (retaking after a lost connection), print `moved generation=N` instead when
    the generation is no longer `expect`: another deployer took the node in between. `then`,
    a read-only script run once the lock is held, prints its lines after that one, and
    `then=end` after them (a script of its own would be a round trip more)."""
    record = json.dumps(
        {"deployment": claim.deployment_id, "environment": claim.environment,
         "deployer": claim.deployer}
    )[1:-1]  # fmt: skip
    mine = json.dumps({"deployment": claim.deployment_id})[1:-1]
    return f"""set -u
S={q(path + "/.edeliver")}; RECORD={q(record)}; MINE={q(mine)}; EXPECT={q(str(expect or ""))}
{{ [ -d "$S" ] || mkdir -p "$S"; }} && exec 9>>"$S/lock" || exit 3
if ! flock -w 2 9; then
  case "$(cat "$S/lock.json" 2>/dev/null)" in
    *"$MINE"*) flock -w {int(wait)} 9 ;;
    *) false ;;
  esac || {{ echo "busy now=$(date +%s)"; cat "$S/lock.json" 2>/dev/null; exit 3; }}
fi
(
  flock -w {int(wait)} 8 || {{ echo "a script of an earlier holder still switches here"; exit 3; }}
  g=0; read -r g 2>/dev/null <"$S/lock.generation"  # builtins: no process
  if [ -n "$EXPECT" ] && [ "${{g:-0}}" != "$EXPECT" ]; then echo "moved generation=$g"; exit 3; fi
  echo $(( ${{g:-0}} + 1 )) >"$S/lock.generation.new" &&
    mv -f "$S/lock.generation.new" "$S/lock.generation"
) 8>>"$S/switch.lock" || exit 3
read -r GEN <"$S/lock.generation" || exit 3; SINCE=$(date +%s)
beat() {{  # at the epoch second $1, else the clock's
  printf '{{%s, "generation": %s, "since": %s, "heartbeat": %s}}\\n' "$RECORD" "$GEN" "$SINCE" \\
    "${{1:-$(date +%s)}}" >"$S/lock.json.new" && mv -f "$S/lock.json.new" "$S/lock.json"
}}
beat "$SINCE" || exit 3
main=$$
(
  exec 9>&-
  while sleep {WATCH}; do
    kill -0 "$main" 2>/dev/null || exit 0
    last=; read -r last <"$S/lock.json" 2>/dev/null  # builtins: no process but the clock's
    last=${{last##*'"heartbeat": '}}; last=${{last%%[!0-9]*}}
    [ $(( $(date +%s) - ${{last:-0}} )) -le {BOUND} ] || {{ kill "$main"; exit 0; }}
  done
) </dev/null >/dev/null 2>&1 &
echo "locked generation=$GEN"
{_then_part(then)}while IFS= read -r _; do beat; done
rm -f "$S/lock.json"
"""


def holder_script(path: str) -> str:
    """`free`, or `held now=<node epoch>` and the holder's record."""
    return f"""S={q(path + "/.edeliver")}
[ -f "$S/lock" ] || {{ echo free; exit 0; }}
exec 9>>"$S/lock" || exit 3
if flock -n 9; then echo free; exit 0; fi
echo "held now=$(date +%s)"; cat "$S/lock.json" 2>/dev/null
"""


def generation_guard(generation: int | None) -> str:
    """Shell functions for scripts that change what runs (a switch, a start or stop, a hot
    install_release or make_permanent): `guarded CMD...` runs CMD under switch.lock after
    checking that the node's lock is held and at `generation`, so by this deployer's holder
    (every acquisition bumps it); no check when None: nothing was locked. A refusal exits the
    script with REFUSED_BY_LOCK; otherwise CMD's status is returned (an `exit` in CMD ends
    only its subshell)."""
    expected = "" if generation is None else str(int(generation))
    return f"""GEN={q(expected)}; REFUSED={REFUSED_BY_LOCK}
guarded() {{
  [ -n "$GEN" ] || {{ "$@"; return; }}
  (
    flock -w {SAME_DEPLOYMENT_WAIT} 8 || exit $REFUSED
    if flock -n "$S/lock" true; then
      echo "the node's lock is not held any more (no heartbeat reached it); refusing to" \\
        "change what runs" >&2
      exit $REFUSED
    fi
    now=; read -r now 2>/dev/null <"$S/lock.generation"
    if [ "$now" != "$GEN" ]; then
      echo "the node's lock moved on to generation $now (this script has $GEN): a newer" \\
        "deployer holds it; refusing to change what runs" >&2
      exit $REFUSED
    fi
    "$@" 8>&-
  ) 8>>"$S/switch.lock"
  rc=$?; [ "$rc" -ne "$REFUSED" ] || exit "$REFUSED"
  return "$rc"
}}
"""


def parse_holder(node: str, output: str) -> NodeLockHolder | None:
    """The holder `holder_script` or a refused `hold_script` printed, or None when free."""
    first, _, rest = output.strip().partition("\n")
    if not first.startswith(("held", "busy")):
        return None
    now = int(first.partition("now=")[2] or 0)
    try:
        record = json.loads(rest or "{}")
    except json.JSONDecodeError:
        record = {}
    since = int(record.get("since", now))
    return NodeLockHolder(
        node=node,
        deployment_id=str(record.get("deployment", "unknown")),
        environment=str(record.get("environment", "unknown")),
        deployer=str(record.get("deployer", "unknown")),
        since=datetime.fromtimestamp(since, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        heartbeat_age=max(0, now - int(record.get("heartbeat", now))),
        generation=int(record.get("generation", 0)),
    )


def _then_part(then: str) -> str:
    return f"(\n{then}) </dev/null 2>/dev/null\necho then=end\n" if then else ""


class NodeLock:
    """One holder process on one connection, and the heartbeats that keep it."""

    def __init__(
        self, node: str, process: asyncssh.SSHClientProcess[str], generation: int, said: str = ""
    ):
        self.node, self.generation, self._process = node, generation, process
        self.said = said  # what the `then` script printed once the lock was held
        self._beats = asyncio.create_task(self._beat())

    @classmethod
    async def take(
        cls,
        node: str,
        conn: asyncssh.SSHClientConnection,
        path: str,
        claim: NodeClaim,
        expect: int | None = None,
        then: str = "",
    ) -> NodeLock:
        """The node's lock for `claim`; LockHeldError naming the holder when another has it,
        NodeError when retaking it (`expect`: the generation held before) finds that another
        deployer took the node since. `then`: see `hold_script`; its output in `said`."""
        process = await conn.create_process(HOLD_SH)
        script = hold_script(path, claim, SAME_DEPLOYMENT_WAIT, expect, then)
        process.stdin.write(base64.b64encode(script.encode()).decode() + "\n")
        said = await process.stdout.readline()
        if said.startswith("locked generation="):
            generation = int(said.strip().partition("=")[2])
            return cls(node, process, generation, await _then_said(process) if then else "")
        said += await _rest(process)
        process.close()
        if said.startswith("moved generation="):
            raise NodeError(
                f"{node}: another deployer took the node while this one's connection was lost "
                f"(its lock is at generation {said.strip().partition('=')[2]}, this one held "
                f"{expect}); not acting on it any more"
            )
        holder = parse_holder(node, said)
        if holder is None:
            raise NodeError(f"{node}: taking the node's lock failed: {said.strip() or 'no output'}")
        raise LockHeldError(f"{holder.describe()}; nothing was changed on any node")

    @property
    def held(self) -> bool:
        return self._process.exit_status is None and not self._beats.done()

    async def release(self) -> None:
        """End the heartbeats and the holder; bounded, as the connection may be gone."""
        self._beats.cancel()
        with suppress(asyncssh.Error, OSError, TimeoutError, asyncio.CancelledError):
            self._process.stdin.write_eof()
            await asyncio.wait_for(self._process.wait_closed(), _RELEASE_SECONDS)
        self._process.close()

    async def _beat(self) -> None:
        with suppress(asyncssh.Error, OSError):
            while True:
                await asyncio.sleep(INTERVAL)
                self._process.stdin.write("beat\n")


async def _then_said(process: asyncssh.SSHClientProcess[str]) -> str:
    """The lines a holder's `then` printed, up to its `then=end` (or the holder's end)."""
    lines = []
    while (line := await process.stdout.readline()) and line != "then=end\n":
        lines.append(line)
    return "".join(lines)


async def _rest(process: asyncssh.SSHClientProcess[str]) -> str:
    with suppress(asyncssh.Error, OSError, TimeoutError):
        return str(await asyncio.wait_for(process.stdout.read(), _RELEASE_SECONDS))
    return ""
