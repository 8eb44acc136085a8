"""The one error tree of Edeliver; each class knows the exit code it maps to (DESIGN §9).

EdeliverError                      exit 1  something failed
├── UsageError                     exit 2  bad usage or configuration
│   ├── ConfigError                        names the file and key path at fault
│   │   └── ConfigErrors                   every problem of one file, one per line
│   └── NotFoundError                      an unknown deployment, version or node
├── RefusedError                   exit 3  refused before any change
│   ├── LockHeldError                      an environment or a node is held by another deployment
│   ├── NotUniformError                    nodes differ from each other or from the release
│   └── HostKeyError                       unknown or changed SSH host key
├── DeploymentFailed               exit 1  a node failed; the fallback was applied
├── DeploymentInterrupted      exit 4  stopped midway; `edeliver resume` continues it
├── EventStoreError            exit 1  the event store failed; names the store, never a password
│   └── HistoryConflict        exit 3  another writer stored the same aggregate's next event
├── DamagedHistory             exit 1  a deployment's stored events do not replay
└── NodeError                      exit 1  a step failed on one node (caught by the orchestrator)
    ├── NodeUnreachable                    connection refused, lost or timed out
    └── StepTimeout                        a step outlived its timeout
"""

from __future__ import annotations

import re


class EdeliverError(Exception):
    """Root of every error Edeliver raises on purpose."""

    exit_code = 1


class UsageError(EdeliverError):
    """The command line or the configuration cannot be used as given."""

    exit_code = 2


class ConfigError(UsageError):
    """A config file is invalid; the message names the file, the key and what was expected."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file, self.key, self.problem = file, key, problem
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}")


class ConfigErrors(ConfigError):
    """Several problems of one config file, found in one reading: a line each."""

    def __init__(self, problems: list[ConfigError]) -> None:
        self.problems = problems
        first = problems[0]
        self.file, self.key, self.problem = first.file, first.key, first.problem
        UsageError.__init__(self, "\n".join(str(problem) for problem in problems))


class NotFoundError(UsageError):
    """Something named on the command line does not exist."""


class RefusedError(EdeliverError):
    """The operation was refused before anything changed."""

    exit_code = 3


class LockHeldError(RefusedError):
    """Another deployment holds the environment."""


class NotUniformError(RefusedError):
    """The nodes of an environment differ, or differ from the release's build platform."""


class HostKeyError(RefusedError):
    """A node presented a host key that is not pinned."""


class HostKeyChanged(HostKeyError):
    """A node presented a key other than the one pinned: possibly a man in the middle."""


class DeploymentFailed(EdeliverError):
    """The deployment ended with failed nodes; the fallback has been applied."""


class DeploymentInterrupted(EdeliverError):
    """The deployment stopped midway and can be resumed."""

    exit_code = 4


class EventStoreError(EdeliverError):
    """The event store refused or failed a read or a write; `transient` when trying again later
    may work (a locked or full database, a lost connection), so the journal retries it."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class HistoryConflict(EventStoreError):
    """Another writer stored the next event of the same deployment or lock first (optimistic
    concurrency): of two writers, one wins and the other is refused, with nothing interleaved."""

    exit_code = 3


class DamagedHistory(EdeliverError):
    """A deployment's stored events do not replay (a version missing, an event that does not
    decode): `log` still prints them and `abandon --force` still releases the environment."""


class NodeError(EdeliverError):
    """A step failed on one node."""


class NodeUnreachable(NodeError):
    """The node could not be reached, or the connection was lost. `passing`: it looks like a
    node rebooting or an sshd restarting, which waiting may end (a refused login does not);
    the adapter that met the error says which."""

    def __init__(self, message: str, *, passing: bool = False) -> None:
        super().__init__(message)
        self.passing = passing


class StepTimeout(NodeError):
    """A step on a node took longer than its timeout."""


def one_line(error: BaseException) -> str:
    """An error of a library as one line: its type and its message, whitespace folded."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def error_code(error: EdeliverError) -> str:
    """The error's kind as `--json` names it: its class in snake case (`LockHeldError` →
    `lock_held`, `HostKeyChanged` → `host_key_changed`), stable as the error tree is."""
    name = type(error).__name__.removesuffix("Errors").removesuffix("Error") or "edeliver"
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
