"""Reading one TOML table of edeliver.toml against its declared keys, collecting problems.

A problem with one key (a wrong type, a value out of bounds, an unknown key) is recorded and the
key read as absent, so that one reading of the file finds every mistake; a problem that stops a
whole table (a missing required key, a rule between keys) is raised and recorded by `collect`
around that table. `parse_config` raises them all at once in the end (`ConfigErrors`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, TypeVar, cast

from edeliver.core.domain.config_keys import Key, did_you_mean
from edeliver.core.domain.errors import ConfigError

T = TypeVar("T")


class Recorded(Exception):
    """A table stopped by a problem already recorded; `collect` ends its reading quietly."""


class Table:
    """One table being read: its key path, its declared keys, the problems found so far."""

    def __init__(
        self, file: str, path: str, data: object, keys: tuple[Key, ...], problems: list[ConfigError]
    ) -> None:
        if not isinstance(data, dict):
            raise ConfigError(file, path, "expected a table")
        self.file, self.path, self.data = file, path, cast(dict[str, Any], data)
        self.keys, self.problems = {key.name: key for key in keys}, problems
        self.invalid: set[str] = set()
        for name in self.data:
            if name not in self.keys:  # a misspelt setting must not silently take its default
                self.record(name, "unknown key" + did_you_mean(name, list(self.keys)))

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.file, self.key(name), problem)

    def record(self, name: str, problem: str) -> None:
        """Note a problem with `name`; the key then reads as absent."""
        self.problems.append(self.fail(name, problem))
        self.invalid.add(name)

    def get(self, name: str, kind: type[T], expected: str) -> T | None:
        assert name in self.keys, f"{self.key(name)} is not declared in config_keys"
        value = self.data.get(name)
        if value is None or name in self.invalid:
            return None
        # TOML booleans are Python ints; a port of `true` must not pass as 1.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.record(name, f"expected {expected}, got {value!r}")
            return None
        return value

    def require(self, name: str, kind: type[T], expected: str) -> T:
        value = self.get(name, kind, expected)
        if value is None:
            if name in self.invalid:
                raise Recorded
            raise self.fail(name, f"missing; expected {expected}")
        return value

    def checked(self, name: str, check: Callable[[str, object], T]) -> T | None:
        """A key read by rules of its own (an env table, a cookie): `check(key path, value)`,
        given None when absent; a problem it raises is recorded and the key read as absent."""
        assert name in self.keys, f"{self.key(name)} is not declared in config_keys"
        if name in self.invalid:
            return None
        try:
            return check(self.key(name), self.data.get(name))
        except ConfigError as error:
            self.problems.append(error)
            self.invalid.add(name)
            return None

    def strings(self, name: str) -> tuple[str, ...] | None:
        values = self.get(name, list, "a list of strings")
        if values is None:
            return None
        if not all(isinstance(v, str) for v in values):
            self.record(name, f"expected a list of strings, got {values!r}")
            return None
        return tuple(values)

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(name, str, "one of " + " | ".join(choices))
        if value is None:
            return default
        if value not in choices:
            hint = did_you_mean(value, choices)
            self.record(name, f"expected one of {' | '.join(choices)}, got {value!r}{hint}")
            return default
        return value

    def int_at_least(self, name: str, low: int) -> int | None:
        value = self.get(name, int, f"an integer >= {low}")
        if value is not None and value < low:
            self.record(name, f"expected an integer >= {low}, got {value}")
            return None
        return value

    def port(self, name: str) -> int | None:
        value = self.get(name, int, "a port number 1-65535")
        if value is not None and not 1 <= value <= 65535:
            self.record(name, f"expected a port number 1-65535, got {value}")
            return None
        return value

    def seconds(self, name: str, at_most: float = math.inf) -> float | None:
        """A positive, finite number of seconds; TOML's `true`, `nan` and `inf` are refused (a
        boolean is an int to Python, and NaN compares false with every deadline)."""
        expected = "a number of seconds > 0"
        value = self.get(name, object, expected)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.record(name, f"expected {expected}, got {value!r}")
        elif not math.isfinite(value) or value <= 0:
            self.record(name, f"expected {expected}, got {value}")
        elif value > at_most:
            self.record(name, f"expected at most step_timeout ({at_most:g}), got {value:g}")
        else:
            return float(value)
        return None

    def table(self, name: str) -> Table:
        """The table under `name` (empty when absent), read against its declared keys."""
        keys = self.keys[name].table
        assert keys is not None, f"{self.key(name)} is not declared as a table"
        data = self.data.get(name, {}) if name not in self.invalid else {}
        return Table(self.file, self.key(name), data, keys, self.problems)

    def subtables(self, name: str, pattern: Callable[[str], bool]) -> Iterator[tuple[str, Table]]:
        """The named tables under `name` (`[nodes.web1]`…); a bad name or a table that is not
        one is recorded and skipped."""
        keys = self.keys[name].each
        assert keys is not None, f"{self.key(name)} is not declared as named tables"
        for key, value in self.table_data(name).items():
            path = f"{self.key(name)}.{key}"
            if not pattern(key):
                problem = "names use letters, digits, _ . -"
                self.problems.append(ConfigError(self.file, path, problem))
                continue
            read = partial(Table, self.file, path, value, keys, self.problems)
            sub = collect(self.problems, read)
            if sub is not None:
                yield key, sub

    def table_data(self, name: str) -> dict[str, Any]:
        data = self.data.get(name, {})
        if isinstance(data, dict):
            return cast(dict[str, Any], data)
        self.record(name, "expected a table")
        return {}


def collect(problems: list[ConfigError], read: Callable[[], T]) -> T | None:
    """`read()`, or None with its problem recorded: one table's mistake does not hide the next."""
    try:
        return read()
    except Recorded:
        return None
    except ConfigError as error:
        problems.append(error)
        return None
