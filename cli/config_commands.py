"""`edeliver config check` (every problem of edeliver.toml at once) and `edeliver config schema`
(its JSON Schema, for editors), both from the one declaration of keys
(core/domain/config_keys.py)."""

from __future__ import annotations

import json

import typer

from edeliver.cli.app import SET_UP, JsonOption, app, exits_on_errors, runtime_of
from edeliver.cli.output import print_json
from edeliver.core.domain.config_keys import json_schema

config_app = typer.Typer(
    help="Check .deliver/edeliver.toml, or print its JSON Schema for editors.\n\n"
    "Example: edeliver config check",
    no_args_is_help=True,
)
app.add_typer(config_app, name="config", rich_help_panel=SET_UP)


@config_app.command()
@exits_on_errors
def check(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Read .deliver/edeliver.toml and report every problem at once, a line each (exit 2).

    Example: edeliver config check
    """
    runtime = runtime_of(ctx)
    config = runtime.config
    if as_json:
        environments = list(config.environments)
        print_json(file=config.file, nodes=list(config.nodes), environments=environments)
        return
    typer.echo(
        f"{config.file}: valid ({len(config.nodes)} nodes, "
        f"environments: {', '.join(config.environments) or 'none'})"
    )


@config_app.command()
@exits_on_errors
def schema(ctx: typer.Context) -> None:
    """Print the JSON Schema of edeliver.toml, for taplo or VS Code's Even Better TOML.

    Example: edeliver config schema > .deliver/edeliver.schema.json
    """
    typer.echo(json.dumps(json_schema(), indent=2))
