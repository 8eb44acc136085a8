"""Remote commands whose output is kept bounded while it is read.

`asyncssh`'s `conn.run` gathers a command's whole stdout and stderr in memory: a task that
prints a log in a loop, or a runaway `rpc`, could take the deployer's memory with it. Here each
stream is drained into a `bounded_output.Tail`, the reader local commands use too.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from pathlib import Path

import asyncssh

from edeliver.adapters.local.bounded_output import LIMIT, Tail, drain

_SEND_BLOCK = 256 * 1024
Process = asyncssh.SSHClientProcess[bytes]
# Every script sent to a host, at DEBUG: `edeliver -vv` prints them, masked (cli/output.py).
SCRIPTS = logging.getLogger("edeliver.scripts")
# Here-documents whose end word starts so carry secrets (the runtime settings, the cookie, which
# may be generated and so known to no redactor): a logged script shows them, not what they hold.
SECRET_BODY_END = "EDELIVER_END_"  # noqa: S105 (a delimiter, not a password)
_SECRET_BODY = re.compile(rf"<<'({SECRET_BODY_END}\w+)'([^\n]*)\n.*?^\1$", re.DOTALL | re.M)


def log_script(host: str, script: str) -> None:
    """Say which script goes to `host`; nothing is formatted unless someone listens."""
    if SCRIPTS.isEnabledFor(logging.DEBUG):
        SCRIPTS.debug("%s", without_secret_bodies(script), extra={"node": host})


def without_secret_bodies(script: str) -> str:
    return _SECRET_BODY.sub(lambda m: f"<<'{m[1]}'{m[2]}\n[not shown: secrets]\n{m[1]}", script)


async def run_bounded(
    conn: asyncssh.SSHClientConnection,
    command: str,
    script: str,
    limit: int = LIMIT,
    timeout: float | None = None,
) -> asyncssh.SSHCompletedProcess:
    """Run `command` with `script` on its stdin; its exit status and the tails of its output.
    Past `timeout`, TimeoutError (the caller closes the connection or stops the script)."""
    async with asyncio.timeout(timeout):
        return await _run(conn, command, script, limit)


async def _run(
    conn: asyncssh.SSHClientConnection, command: str, script: str, limit: int
) -> asyncssh.SSHCompletedProcess:
    # Not `async with`: a run cut short must leave the channel open, as `conn.run` does;
    # closing it would hang up on the script before the caller stops its process tree.
    process = await conn.create_process(command, encoding=None)
    process.stdin.write(script.encode())
    process.stdin.write_eof()
    return await _completed(process, command, limit)


async def run_streaming(
    conn: asyncssh.SSHClientConnection,
    command: str,
    script: str,
    data: Path,
    sent: Callable[[int], None],
    limit: int = LIMIT,
) -> asyncssh.SSHCompletedProcess:
    """Run `command` with, on its stdin, the length of `script` on a line, `script`, then the
    file `data`, sent as fast as the channel takes it (`sent` hears the bytes of it so far)."""
    process = await conn.create_process(command, encoding=None)
    body = script.encode()
    process.stdin.write(b"%d\n%s" % (len(body), body))
    completing = asyncio.ensure_future(_completed(process, command, limit))
    try:
        await _send(process, data, sent)
    except (BrokenPipeError, asyncssh.Error):
        pass  # the script stopped reading: its exit status says why
    except asyncio.CancelledError:
        # Cut short (the step's timeout): dropped, not closed politely, as an SFTP upload is
        # (sftp_upload): a node partitioned away would not answer for a keepalive's minute.
        # The node's script then reads the end of its input and removes what it wrote.
        completing.cancel()
        conn.abort()
        raise
    except BaseException:
        completing.cancel()
        raise
    return await completing


async def _send(process: Process, data: Path, sent: Callable[[int], None]) -> None:
    done = 0
    with data.open("rb") as source:
        while block := await asyncio.to_thread(source.read, _SEND_BLOCK):
            process.stdin.write(block)
            await process.stdin.drain()
            done += len(block)
            sent(done)
    process.stdin.write_eof()


async def _completed(process: Process, command: str, limit: int) -> asyncssh.SSHCompletedProcess:
    out, err = Tail(limit), Tail(limit)
    await asyncio.gather(drain(process.stdout, out), drain(process.stderr, err))
    await process.wait_closed()
    status = process.exit_status
    returncode = process.returncode
    return asyncssh.SSHCompletedProcess(
        process.env, command, None, status, process.exit_signal, returncode, out.text(), err.text()
    )
