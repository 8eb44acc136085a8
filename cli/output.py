"""What a command says besides its result, by verbosity: one object every command writes through.

    -q   only errors and the command's final line
    (no flag)  notes and warnings on stderr, progress as a live table or plain lines
    -v   also each node's steps and tasks as they are stored, with how long each took
    -vv  also every script sent to a node, secrets masked (core/domain/redaction.py)

The result (tables, `--json` documents) goes to stdout; everything here goes to stderr, so that
`-v` never corrupts what a program reads from stdout.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import typer

from edeliver.core.domain.redaction import Redactor

# The logger adapters/node/ssh_output.py sends scripts to, by name (importing it loads asyncssh).
SCRIPTS = logging.getLogger("edeliver.scripts")

QUIET, NORMAL, VERBOSE, SCRIPTS_TOO = -1, 0, 1, 2
# Every JSON document (and every line of a JSON stream) says its shape's version first; it
# changes only when a key is removed or changes meaning (docs/cli.md lists the shapes).
SCHEMA = "edeliver/v1"


def print_json(**fields: Any) -> None:
    """One JSON document, or one line of a JSON stream, on stdout."""
    typer.echo(json.dumps({"schema": SCHEMA, **fields}))


def print_json_error(code: str, message: str, exit_code: int, **details: Any) -> None:
    """An error as `--json` users read it: a document on stdout with a stable shape."""
    print_json(error={"code": code, "message": message, "exit": exit_code, **details})


@dataclass
class Output:
    """The verbosity chosen once on the command line, and the lines it lets through."""

    verbosity: int = NORMAL
    redact: Redactor = field(default_factory=Redactor)
    clock: Callable[[], float] = time.monotonic

    @property
    def quiet(self) -> bool:
        return self.verbosity <= QUIET

    @property
    def verbose(self) -> bool:
        return self.verbosity >= VERBOSE

    def note(self, text: str) -> None:
        """A line for the person watching (a warning, a hint, a build's progress); not in -q."""
        if not self.quiet:
            typer.echo(text, err=True)

    def step(self, text: str) -> None:
        """A line of -v: what happens on a node, as it happens."""
        if self.verbose:
            typer.echo(self.redact(text), err=True)

    def error(self, text: str) -> None:
        typer.echo(text, err=True)

    @contextmanager
    def showing_scripts(self) -> Iterator[None]:
        """With -vv, every script the SSH adapters send is printed (masked) while this lasts."""
        if self.verbosity < SCRIPTS_TOO:
            yield
            return
        handler = _ScriptLines(self)
        SCRIPTS.addHandler(handler)
        SCRIPTS.setLevel(logging.DEBUG)
        try:
            yield
        finally:
            SCRIPTS.removeHandler(handler)
            SCRIPTS.setLevel(logging.NOTSET)


class _ScriptLines(logging.Handler):
    """A script sent to a node as lines prefixed by the node's name, secrets masked."""

    def __init__(self, output: Output) -> None:
        super().__init__(logging.DEBUG)
        self.output = output

    def emit(self, record: logging.LogRecord) -> None:
        node = getattr(record, "node", "?")
        script = self.output.redact(record.getMessage())
        lines = [f"{node}: sends a script:", *(f"  {node} | {line}" for line in script.split("\n"))]
        typer.echo("\n".join(lines), err=True)


class StepLines:
    """-v: each node's transitions and task runs as they are stored, with how long the state
    the node leaves lasted (measured here: the events' own clock may be another machine's)."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self.started = output.clock()
        self.entered: dict[str, float] = {}

    def __call__(self, events: Sequence[Any]) -> None:
        for domain_event in events:
            line = self._line(type(domain_event).__name__, domain_event)
            if line:
                self.output.step(line)

    def _line(self, name: str, e: Any) -> str | None:
        now = self.output.clock()
        if name == "NodeTransitioned":
            took = now - self.entered.get(e.node, self.started)
            self.entered[e.node] = now
            detail = f": {e.detail.splitlines()[0]}" if e.detail else ""
            return f"{e.node}: {e.src} -{e.trigger}-> {e.dest} ({e.src} took {took:.2f}s){detail}"
        if name == "TaskStarted":
            self.entered[f"task {e.node} {e.stage} {e.task}"] = now
            return f"{e.node or 'local'}: task {e.task} at {e.stage} started"
        if name == "TaskRan":
            took = now - self.entered.pop(f"task {e.node} {e.stage} {e.task}", now)
            return f"{e.node or 'local'}: task {e.task} at {e.stage}: {e.outcome} ({took:.2f}s)"
        if name == "FallbackDecided":
            return f"{e.failed_node} failed: fallback for {', '.join(e.scope)}"
        return None
