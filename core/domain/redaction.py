"""Secrets never stored (DESIGN §2): output kept in events and printed in logs is redacted.

What a task or a node command prints may hold the values of the environment it ran with (a task
that runs `env`, a migration that echoes its database URL). Before such output enters an event
or a log line it goes through a `Redactor`, which replaces:

- the value of every secret-looking variable of that environment (`*SECRET*`, `*PASSWORD*`,
  `*TOKEN*`, `*_KEY`, `AWS_*`, `PGPASSWORD`, and any names given), and the password of any URL
  among its values;
- the password of any URL in the text itself (`postgresql://user:pw@host` → `user:[redacted]@`),
  and `password=` URL parameters.

Values shorter than `SHORTEST` are left alone: replacing every `1` or `true` a flag variable
holds would make output unreadable, and such a value protects nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

MARK = "[redacted]"
SHORTEST = 4
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|_KEY$|^AWS_|^PGPASSWORD$", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*):(?P<pw>[^@/\s]+)@")
_PASSWORD_PARAMETER = re.compile(r"(?P<head>[?&;]password=)(?P<pw>[^&;#\s]+)", re.IGNORECASE)


def is_secret_name(name: str, also: Iterable[str] = ()) -> bool:
    """Whether a variable of this name holds a secret, by its looks or because it is named."""
    return bool(SECRET_NAME.search(name)) or name in set(also)


def secret_values(env: Mapping[str, str], also: Iterable[str] = ()) -> frozenset[str]:
    """The values to hide of an environment: its secret-looking variables' values and the
    passwords inside any URL it holds (a DATABASE_URL's, say)."""
    named = set(also)
    values = {value for name, value in env.items() if is_secret_name(name, named)}
    for value in env.values():
        values |= {m["pw"] for m in _URL_PASSWORD.finditer(value)}
        values |= {m["pw"] for m in _PASSWORD_PARAMETER.finditer(value)}
    return frozenset(v for v in values if len(v) >= SHORTEST)


class Redactor:
    """Hides a fixed set of secret values, and URL passwords, in any text it is given."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        # Longest first, so a secret that contains another is hidden whole.
        self.secrets = tuple(sorted({s for s in secrets if len(s) >= SHORTEST}, key=len)[::-1])
        self._values = (
            re.compile("|".join(re.escape(s) for s in self.secrets)) if self.secrets else None
        )

    @classmethod
    def of_environment(cls, env: Mapping[str, str], also: Iterable[str] = ()) -> Redactor:
        return cls(secret_values(env, also))

    def including(self, env: Mapping[str, str]) -> Redactor:
        """This redactor, also hiding the secrets of `env` (a task's own variables)."""
        more = secret_values(env)
        return self if more <= set(self.secrets) else Redactor({*self.secrets, *more})

    def __call__(self, text: str) -> str:
        if self._values is not None:
            text = self._values.sub(MARK, text)
        text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{MARK}@", text)
        return _PASSWORD_PARAMETER.sub(lambda m: f"{m['head']}{MARK}", text)
