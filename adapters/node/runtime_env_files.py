"""The app's runtime settings on the nodes: one env file per node, one cookie per environment.

On a node of deploy path P:

    P/shared/.edeliver/env             `export NAME='value'` lines, 0600, renamed into place;
                                       a `from_file` secret is read from P/shared/<file> each
                                       time the env file is sourced, so it never leaves the node
    P/shared/.edeliver/cookie          the Erlang cookie, the same on every node of an
                                       environment, 0600

Every node script sources the env file first (`SOURCE_RUNTIME_ENV`, in `Layout.prelude` and
`task_script`): the start, stop, health, rpc/eval and task commands all see the same settings.
The values travel on the script's stdin (a here-document), never on a command line, and are
never printed, logged or put in events.

The cookie is one per environment: the nodes are asked for theirs when they are locked (before
anything changes), so a cookie one of them keeps is kept; none kept: one is generated, once per
environment per run, and written to every node; `cookie = { from_env = ... }` wins over both.
Nodes of an environment keeping different cookies are refused, named. A node keeps one cookie
(not one per environment it serves): its one VM must stay reachable whichever environment
deploys it next. The cookie is also written into each installed release's `releases/COOKIE`, so
that an operator's `bin/<app> remote` reaches the VM.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import shlex
from collections.abc import Awaitable, Callable, Mapping

from edeliver.adapters.node.ssh_output import SECRET_BODY_END
from edeliver.core.domain.config import Config
from edeliver.core.domain.errors import RefusedError
from edeliver.core.domain.redaction import Redactor
from edeliver.core.domain.runtime_env import NodeRuntime, runtimes

q = shlex.quote
ENV_FILE = "shared/.edeliver/env"
# The one sourcing point: every node script runs it right after setting P, the deploy path.
SOURCE_RUNTIME_ENV = f'if [ -f "$P/{ENV_FILE}" ]; then . "$P/{ENV_FILE}" || exit 3; fi\n'
MISSING_FILE = 6  # exit status of the write script: a `from_file` secret is not on the node
WRITING = "writing the app's runtime settings (shared/.edeliver/env)"  # its failures say so

RunScript = Callable[[str, str], Awaitable[str]]  # script, what it does -> its stdout


COOKIE_FILE = '"$P/shared/.edeliver/cookie"'


def read_cookie_script(path: str) -> str:
    """Print `cookie=<value>` when the node keeps a cookie."""
    return (
        f"P={q(path)}\nf={COOKIE_FILE}\n"
        'if [ -s "$f" ]; then c=; IFS= read -r c <"$f"; printf "cookie=%s\\n" "$c"; fi\n'
    )


def env_file_text(path: str, runtime: NodeRuntime, cookie: str) -> str:
    """The env file: plain and deployer-given values quoted, file secrets read when sourced."""
    lines = [f"export {name}={q(value)}" for name, value in runtime.values]
    for name, file in runtime.files:
        lines.append(f'export {name}="$(cat {q(path + "/shared/" + file)})"')
    lines.append(f"export RELEASE_COOKIE={q(cookie)}")
    return "".join(line + "\n" for line in lines)


def _read_here_document(variable: str, text: str) -> str:
    """Read `text` into the shell variable `variable` by the shell's own `read`, from a here-
    document: no value is ever on a command line, and no process starts. Each line read ends
    with a newline, as `text` must."""
    end = f"{SECRET_BODY_END}{secrets.token_hex(8)}"
    while end in text:
        end = f"{SECRET_BODY_END}{secrets.token_hex(8)}"
    return (
        f"{variable}=; while IFS= read -r l; do {variable}=\"${variable}$l\n\"; done <<'{end}'\n"
        f"{text}{end}\n"
    )


# `write_if_changed TEXT FILE`: FILE holds TEXT afterwards, written beside and renamed into place
# only when it held something else (a redeploy mostly finds its settings unchanged); `read`
# and `printf` are the shell's own, so no value is on a command line and no process starts.
_WRITE_IF_CHANGED = r"""write_if_changed() {
  have=; l=; while IFS= read -r l; do have="$have$l
"; l=; done 2>/dev/null <"$2"
  have=$have$l  # a last line without its newline
  [ "$have" = "$1" ] && return 0
  printf '%s' "$1" >"$2.new" && mv -f "$2.new" "$2"
}
"""


def write_script(path: str, runtime: NodeRuntime, cookie: str) -> str:
    """Check the file secrets are there, then write the cookie and the env file atomically
    (each written beside, then renamed) where they changed, and the cookie into the installed
    releases."""
    checks = "".join(
        f'[ -r "$P/shared/"{q(file)} ] || '
        f"{{ echo {q(f'shared/{file} (for {name}) is missing or unreadable')} >&2; "
        f"exit {MISSING_FILE}; }}\n"
        for name, file in runtime.files
    )
    return (
        f'set -u\nP={q(path)}\nD="$P/shared/.edeliver"\numask 077\n'
        '{ [ -d "$D" ] || mkdir -p "$D"; } && chmod 700 "$D" || exit 3\n'
        + checks
        + _WRITE_IF_CHANGED
        + _read_here_document("cookie", cookie + "\n")
        + f'write_if_changed "$cookie" {COOKIE_FILE} || exit 3\n'
        + _read_here_document("env", env_file_text(path, runtime, cookie))
        + 'write_if_changed "$env" "$D/env" || exit 3\n'
        + 'for c in "$P"/releases/*/releases/COOKIE; do\n'
        + '  if [ -f "$c" ]; then write_if_changed "$cookie" "$c" || exit 3; fi\ndone\n'
    )


def read_files_script(path: str, runtime: NodeRuntime) -> str:
    """Print each `from_file` secret the node has, base64-encoded, one per line: the deployer
    keeps them in memory only, to hide them in what commands on the node print."""
    return f"P={q(path)}\n" + "".join(
        f'f="$P/shared/"{q(file)}; if [ -r "$f" ]; then base64 -w0 <"$f"; echo; fi\n'
        for _, file in runtime.files
    )


def file_secrets(output: str) -> set[str]:
    """The values `read_files_script` printed, each also without its trailing newline (the
    form `$(cat file)` gives the app)."""
    values = set()
    for line in output.split():
        try:
            value = base64.b64decode(line, validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            continue
        values |= {value, value.rstrip("\n")}
    return values


class RuntimeEnvFiles:
    """The runtime settings of a config's environments, as the nodes get them: resolved from
    the deployer's environment once per environment, with one cookie per environment."""

    def __init__(self, config: Config, deployer_env: Mapping[str, str]) -> None:
        self.config, self.deployer_env = config, dict(deployer_env)
        self._runtimes: dict[str, dict[str, NodeRuntime]] = {}
        self._kept: dict[str, dict[str, str]] = {}  # environment -> node -> its cookie
        self._generated: dict[str, str] = {}
        self._reading = asyncio.Lock()

    def of(self, environment: str, node: str) -> NodeRuntime:
        if environment not in self._runtimes:
            self._runtimes[environment] = runtimes(self.config, environment, self.deployer_env)
        return self._runtimes[environment][node]

    def asks_cookie(self, environment: str, node: str) -> bool:
        """Whether the node's kept cookie is to be read (`read_cookie_script`): not when the
        deployer gives one, which wins over any kept one."""
        return self.of(environment, node).cookie is None

    async def take_kept_cookie(self, said: str, environment: str, node: str) -> None:
        """Note the cookie `read_cookie_script` said the node keeps; refuse when it differs
        from another node's of the environment."""
        kept = said.partition("cookie=")[2].strip()
        async with self._reading:
            seen = self._kept.setdefault(environment, {})
            others = sorted(n for n, c in seen.items() if c != kept and kept)
            if kept and not others:  # a refused node's cookie is never the environment's
                seen[node] = kept
        if others:
            raise RefusedError(
                f"{others[0]} and {node} keep different Erlang cookies "
                f"(shared/.edeliver/cookie), in environment {environment}; make them one, or set "
                f'environments.{environment}.cookie = {{ from_env = "..." }}; nothing was changed'
            )

    def cookie(self, environment: str, node: str) -> str:
        """The deployer's, else the one the nodes keep, else one generated for this run."""
        given = self.of(environment, node).cookie
        if given:
            return given
        kept = self._kept.get(environment)
        if kept:
            return next(iter(kept.values()))  # all agree: refused otherwise
        return self._generated.setdefault(environment, secrets.token_hex(32))

    async def hiding_file_secrets(
        self, run: RunScript, path: str, environment: str, node: str
    ) -> Redactor:
        """A redactor of the node's `from_file` secrets (of those the node has)."""
        runtime = self.of(environment, node)
        if not runtime.files:
            return Redactor()
        said = await run(read_files_script(path, runtime), "reading its file secrets")
        return Redactor(file_secrets(said))

    def write_script_of(self, path: str, environment: str, node: str) -> str:
        """The script writing the node's runtime settings (an install runs it as its part)."""
        return write_script(path, self.of(environment, node), self.cookie(environment, node))
