"""Remote commands whose output is kept bounded while it is read.

`asyncssh`'s `conn.run` gathers a command's whole stdout and stderr in memory: a task that
prints a log in a loop, or a runaway `rpc`, could take the deployer's memory with it. Here each
stream is drained into a `bounded_output.Tail`, the reader local commands use too.
"""

from __future__ import annotations

import asyncio

import asyncssh

from edeliver.adapters.bounded_output import LIMIT, Tail, drain


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
    out, err = Tail(limit), Tail(limit)
    await asyncio.gather(drain(process.stdout, out), drain(process.stderr, err))
    await process.wait_closed()
    status = process.exit_status
    returncode = process.returncode
    return asyncssh.SSHCompletedProcess(
        process.env, command, None, status, process.exit_signal, returncode, out.text(), err.text()
    )
