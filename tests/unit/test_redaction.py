"""Output kept in events and logs shows no secret of the environment it ran with."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from edeliver.cli import render
from edeliver.core.domain.redaction import MARK, Redactor, is_secret_name, secret_values

DEPLOYER = {
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "PGPASSWORD": "pg-pass-1234",
    "DATABASE_URL": "postgresql://app:db-pass-5678@db.internal:5432/app",
    "GITHUB_TOKEN": "ghp_abcdefghijklmnop",
    "STRIPE_API_KEY": "sk_live_abcdef",
    "SMTP_PASSWORD": "mail-pass-9",
    "APP_SECRET_BASE": "s3cr3t-base",
    "HOME": "/home/deploy",
    "DEBUG": "1",
    "PATH": "/usr/bin:/bin",
}


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("AWS_SECRET_ACCESS_KEY", True),
        ("AWS_REGION", True),
        ("PGPASSWORD", True),
        ("DB_PASSWORD", True),
        ("github_token", True),
        ("STRIPE_API_KEY", True),
        ("SECRET_KEY_BASE", True),
        ("HOME", False),
        ("KEYBOARD", False),
        ("DATABASE_URL", False),
        ("PATH", False),
    ],
)
def test_secret_looking_names_are_recognised(name: str, secret: bool) -> None:
    """*SECRET*, *PASSWORD*, *TOKEN*, *_KEY, AWS_* and PGPASSWORD name secrets; others do not."""
    assert is_secret_name(name) is secret


def test_every_secret_value_of_the_environment_is_hidden() -> None:
    """A task printing its whole environment leaves no secret value, and every other line whole."""
    printed = "\n".join(f"{k}={v}" for k, v in DEPLOYER.items())
    shown = Redactor.of_environment(DEPLOYER)(printed)
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "PGPASSWORD", "GITHUB_TOKEN"):
        assert DEPLOYER[name] not in shown
        assert f"{name}={MARK}" in shown
    assert "db-pass-5678" not in shown and "mail-pass-9" not in shown
    assert "s3cr3t-base" not in shown and "sk_live_abcdef" not in shown
    assert "HOME=/home/deploy" in shown and "DEBUG=1" in shown and "PATH=/usr/bin:/bin" in shown


def test_the_password_of_a_url_in_a_value_is_hidden_wherever_it_appears() -> None:
    """A DATABASE_URL's password is a secret even when printed apart from its URL."""
    hide = Redactor.of_environment(DEPLOYER)
    assert hide("connecting with db-pass-5678 now") == f"connecting with {MARK} now"
    assert "db-pass-5678" in secret_values(DEPLOYER)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://app:pw0rd@db:5432/x", f"postgresql://app:{MARK}@db:5432/x"),
        ("see https://u:p%40ss@host/path ok", f"see https://u:{MARK}@host/path ok"),
        ("mysql://root:@localhost/db", "mysql://root:@localhost/db"),
        (
            "postgresql://db/x?sslmode=require&password=hunter22",
            f"postgresql://db/x?sslmode=require&password={MARK}",
        ),
        ("https://example.com:8443/health", "https://example.com:8443/health"),
        ("time 10:20:30 user@host", "time 10:20:30 user@host"),
    ],
)
def test_passwords_in_urls_are_hidden_without_knowing_them(text: str, shown: str) -> None:
    """Any URL's password, and a `password=` parameter, is hidden even if no variable held it."""
    assert Redactor()(text) == shown


def test_configured_secret_names_are_hidden_too() -> None:
    """Names given besides the looks (the config's secrets) hide their values as well."""
    env = {"LICENSE": "lic-0000-1111", "COLOR": "green-ish"}
    hide = Redactor.of_environment(env, also=["LICENSE"])
    assert hide("LICENSE=lic-0000-1111 COLOR=green-ish") == f"LICENSE={MARK} COLOR=green-ish"


def test_a_secret_containing_another_is_hidden_whole() -> None:
    """The longest value goes first, so no tail of a longer secret stays visible."""
    hide = Redactor(["abcd", "abcdefgh-long"])
    assert hide("x abcdefgh-long y abcd") == f"x {MARK} y {MARK}"


def test_very_short_values_are_left_alone() -> None:
    """A 1-3 character value (a flag) would garble every line; it protects nothing anyway."""
    assert Redactor.of_environment({"AWS_EC2_METADATA_DISABLED": "yes"})("yes, done") == "yes, done"


def test_a_tasks_own_variables_add_to_the_deployers() -> None:
    """`including` adds the secrets of a task's environment and keeps the deployer's."""
    hide = Redactor(["deployer-secret"]).including({"API_TOKEN": "task-token-1"})
    assert hide("deployer-secret task-token-1") == f"{MARK} {MARK}"


def test_log_lines_hide_secrets_of_the_current_environment_in_old_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An event stored before output was redacted is printed without this environment's secrets."""
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_old-event-token")
    render._printing_redactor.cache_clear()
    old = SimpleNamespace(
        originator_id="0f1e2d3c-0000-0000-0000-000000000000",
        originator_version=7,
        timestamp=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        node="web1",
        stage="post_erlang_update",
        task="notify",
        outcome="failed",
        critical=True,
        output="posting with ghp_old-event-token to https://bot:hunter22@chat.example/hook",
    )
    try:
        record = render.event_record(old)
    finally:
        render._printing_redactor.cache_clear()
    assert record["output"] == f"posting with {MARK} to https://bot:{MARK}@chat.example/hook"
    assert "ghp_old-event-token" not in render.event_line({**record, "event": "TaskRan"})
