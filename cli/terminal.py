"""The local terminal of an interactive console: raw while the console runs, restored after."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import termios
import tty
from collections.abc import Iterator

from edeliver.core.ports import Terminal


@contextlib.contextmanager
def raw_terminal() -> Iterator[Terminal]:
    """Copies of stdin and stdout for the console (the SSH session closes them), with stdin in
    raw mode when it is a terminal, so that every key (Ctrl-C, Ctrl-G, arrows) goes to the
    remote shell; the terminal's settings are restored however the console ends."""
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    saved = termios.tcgetattr(stdin) if os.isatty(stdin) else None
    size = shutil.get_terminal_size()
    terminal = Terminal(
        os.dup(stdin), os.dup(stdout), os.environ.get("TERM", "xterm"), (size.columns, size.lines)
    )
    try:
        if saved is not None:
            tty.setraw(stdin)
        yield terminal
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)
