"""Commands run on a node outside the lifecycle: a task's script, `eval` / `rpc` of Elixir
code, the remote console's command line, the boot version and the release's logs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from edeliver.adapters.node.node_scripts import Layout, checked_version, q
from edeliver.adapters.node.runtime_env_files import SOURCE_RUNTIME_ENV
from edeliver.core.domain.tasks import interpreter

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _exports(env: Mapping[str, str]) -> str:
    bad = [name for name in env if not ENV_NAME.match(name)]
    if bad:
        raise ValueError(f"not an environment variable name: {bad[0]!r}")
    return "".join(f"export {name}={q(value)}\n" for name, value in env.items())


def task_script(path: str, env: Mapping[str, str], script: str) -> str:
    """Run a task's script from the deploy path (made if missing) with its interpreter, the
    app's runtime settings and its environment exported, and stderr merged into stdout, so
    its output reads in order."""
    argv = " ".join(q(arg) for arg in interpreter(script))
    return (
        f"mkdir -p {q(path)} && cd {q(path)} || exit 97\nP={q(path)}\n{SOURCE_RUNTIME_ENV}"
        f"{_exports(env)}"
        f"exec {argv} -c {q(script)} edeliver-task 2>&1\n"
    )


def eval_script(layout: Layout, version: str, code: str, env: Mapping[str, str]) -> str:
    """Evaluate Elixir code with an installed release's `bin/<app> eval`, from its root."""
    return (
        f"{layout.prelude()}V={q(checked_version(version))}\n"
        'complete "$V" || { echo "release $V is not installed on this node"; exit 98; }\n'
        f'cd "$R/$V" || exit 97\n{_exports(env)}'
        f'exec bin/"$APP" eval {q(code)} 2>&1\n'
    )


RELEASE_COMMANDS = ("eval", "rpc")


def release_command_script(layout: Layout, command: str, code: str) -> str:
    """`bin/<app> eval` (a new VM with the release's code) or `rpc` (in the running VM) of
    `code`, from the release current points to; stderr after stdout."""
    if command not in RELEASE_COMMANDS:
        raise ValueError(f"not a release command: {command!r}")
    return layout.prelude() + (
        '[ -d "$P/current/bin" ] || { echo "no release is current under $P"; exit 98; }\n'
        f'cd "$P/current" || exit 97\nexec bin/"$APP" {command} {q(code)} 2>&1\n'
    )


def remote_console_command(layout: Layout) -> str:
    """The command line (not a script: the terminal is its stdin) that opens `bin/<app>
    remote` from the current release; quoted the same in any login shell."""
    start = 'cd "$1/current" && exec bin/"$2" remote'
    return f"sh -c {q(start)} edeliver-console {q(layout.path)} {q(layout.app)}"


def boot_version_script(layout: Layout) -> str:
    """The version a start of `current` boots: the permanent one of its `start_erl.data`
    (after a hot upgrade, not the version the root was unpacked as)."""
    return (
        layout.prelude()
        + 'sed -n "s/^[^ ]* //p" "$P/current/releases/start_erl.data" 2>/dev/null\n'
    )


FOLLOWING = "edeliver-following"  # said by `release_log_script` just before it starts following


def release_log_script(layout: Layout, lines: int, follow: bool) -> str:
    """The last `lines` lines of the newest `erlang.log.N` of the current release (where
    run_erl writes the VM's console output). With `follow`, says FOLLOWING on a line of its
    own, then follows it and, once a newer file is written (run_erl rotated its log, or a
    deployment started another release), that one from its start."""
    n = int(lines)
    start = (
        'd="$P/current/tmp/log"\n'
        'newest() { ls -t "$d"/erlang.log.* 2>/dev/null | head -n 1; }\n'
        "f=$(newest)\n"
        '[ -n "$f" ] || { echo "no erlang.log.* under $d: no release started there" >&2; '
        "exit 3; }\n"
    )
    if not follow:
        return layout.prelude() + start + f'exec tail -n {n} "$f"\n'
    return (
        layout.prelude()
        + start
        + (
            f'echo {FOLLOWING}\ntail -n {n} -F "$f" & t=$!\n'
            "while sleep 1; do\n"
            '  g=$(newest); [ -n "$g" ] && [ "$g" != "$f" ] || continue\n'
            '  kill "$t" 2>/dev/null; f=$g; tail -n +1 -F "$f" & t=$!\n'
            "done\n"
        )
    )


def log_tail_script(layout: Layout, lines: int = 30) -> str:
    """The end of the newest `erlang.log.*` of the release current points to."""
    return layout.prelude() + (
        'f=$(ls -t "$P/current/tmp/log"/erlang.log.* 2>/dev/null | head -n 1)\n'
        f'if [ -n "$f" ]; then echo "$f:"; tail -n {int(lines)} "$f"; fi\n'
    )
