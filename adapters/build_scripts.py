"""The build side of remote and container builds: one POSIX `sh` script and its parser.

The same script runs on a build host over SSH and inside a container: it builds the release
with `mix release` in the unpacked sources, packs it like `mix_build.pack_release` does (entries
`bin/ erts-*/ lib/ releases/`, no `./` prefix), and prints what the manifest records: version,
ERTS, OTP and Elixir versions and the build platform, in the form node probes report it.
Pure functions only; every value put into the script is quoted.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from edeliver.adapters.node_scripts import parse_libc
from edeliver.core.model import Artifact, Platform

q = shlex.quote
OUT = "_edeliver"  # in the sources dir: release/, release.tar.gz, build.log
TARBALL = f"{OUT}/release.tar.gz"
BUILD_FAILED = 9  # the script's exit status when `mix` failed; stderr has the log's tail
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LOG_LINES = 20

# A Mix task, loaded with `elixir -r` before `mix` runs, that appends EDELIVER_VERSION_SUFFIX to
# the project's version as semver build metadata, for the compile and the release alike. It
# changes the version in memory only: mix.exs stays as it is.
AUTO_VERSION_TASK = """\
defmodule Mix.Tasks.Edeliver.Version do
  @moduledoc false
  use Mix.Task

  def run(_args) do
    version = Mix.Project.config()[:version]
    separator = if String.contains?(version, "+"), do: ".", else: "+"
    suffix = System.fetch_env!("EDELIVER_VERSION_SUFFIX")
    Mix.ProjectStack.merge_config(version: version <> separator <> suffix)
  end
end
"""
VERSION_SUFFIX = "EDELIVER_VERSION_SUFFIX"


def mix_argv(args: list[str], env: Mapping[str, str], task_file: str) -> list[str]:
    """`mix ARGS`, or with a version suffix in `env`: the same through the auto-version task."""
    if not env.get(VERSION_SUFFIX):
        return ["mix", *args]
    return ["elixir", "-r", task_file, "-S", "mix", "do", "edeliver.version,", *args]


FACTS = r"""
echo "version=$(awk '{print $2}' releases/start_erl.data)"
echo "erts=$(awk '{print $1}' releases/start_erl.data)"
otp='io:put_chars(erlang:system_info(otp_release)), halt().'
echo "otp=$(erl -noshell -eval "$otp" 2>/dev/null)"
echo "elixir=$(elixir --short-version 2>/dev/null)"
echo "os=$(uname -s)"
echo "arch=$(uname -m)"
echo "getconf=$(getconf GNU_LIBC_VERSION 2>/dev/null)"
echo "ldd=$(ldd --version 2>&1 | head -n 2 | tr '\n' ' ')"
"""


@dataclass(frozen=True)
class BuildFacts:
    version: str
    erts: str
    otp: str
    elixir: str
    platform: Platform


def build_script(env: Mapping[str, str]) -> str:
    """Build in the current dir (the unpacked sources) in one run: compile, then release."""
    return compile_script(env) + release_script(env)


def compile_script(env: Mapping[str, str]) -> str:
    """The first part of a build: a fresh output dir, then `mix compile`; on failure, exit
    BUILD_FAILED with the log's tail. Build-stage tasks may run between the two parts."""
    task_file = f"{OUT}/auto_version.exs"
    write_task = f"printf '%s' {q(AUTO_VERSION_TASK)} > {q(task_file)} || exit 3\n"
    return (
        _prelude(env)
        + 'rm -rf "$O" && mkdir -p "$O" || exit 3\n'
        + (write_task if env.get(VERSION_SUFFIX) else "")
        + _mix_or_fail(mix_argv(["compile"], env, task_file), "")
    )


def release_script(env: Mapping[str, str]) -> str:
    """The second part: `mix release`, packed, then the facts the manifest records."""
    argv = mix_argv(["release"], env, f"{OUT}/auto_version.exs")
    return (
        _prelude(env)
        + _mix_or_fail(argv, ' --path "$O/release" --overwrite')
        + 'cd "$O/release" || exit 3\n'
        "tar -czf ../release.tar.gz bin lib releases erts-* || exit 3\n" + facts_script()
    )


def _prelude(env: Mapping[str, str]) -> str:
    exports = "".join(f"export {_env_name(k)}={q(v)}\n" for k, v in sorted(env.items()))
    return "set -u\nexport MIX_ENV=prod\n" + exports + f"O={q(OUT)}\n"


def _mix_or_fail(argv: list[str], options: str) -> str:
    mix = " ".join(q(a) for a in argv)
    return (
        f'if ! {mix}{options} >>"$O/build.log" 2>&1; then\n'
        f'  tail -n {LOG_LINES} "$O/build.log" >&2; exit {BUILD_FAILED}\n'
        "fi\n"
    )


def facts_script() -> str:
    """Run in a release root: what the manifest records of the build."""
    return FACTS


def parse_facts(output: str) -> BuildFacts:
    fields = dict(line.partition("=")[::2] for line in output.splitlines() if "=" in line)
    libc = parse_libc(fields.get("getconf", ""), fields.get("ldd", ""))
    platform = Platform(fields.get("os", "").lower(), fields.get("arch", "").strip(), *libc)
    return BuildFacts(
        fields.get("version", "").strip(),
        fields.get("erts", "").strip(),
        fields.get("otp", "").strip(),
        fields.get("elixir", "").strip(),
        platform,
    )


def _env_name(name: str) -> str:
    if not _ENV_NAME.match(name):
        raise ValueError(f"{name!r} is not an environment variable name")
    return name


def built_artifact(app: str, facts: BuildFacts, location: str, revision: str) -> Artifact:
    """What a finished build hands to the store (which fills in sha256 and size)."""
    if not facts.version:
        raise ValueError("the build printed no version: releases/start_erl.data is missing")
    return Artifact(
        app, facts.version, sha256="", size=0, platform=facts.platform, location=location,
        git_revision=revision, erts=facts.erts, otp=facts.otp, elixir=facts.elixir,
    )  # fmt: skip


def upload_script(upload: str) -> str:
    """Run the store's upload command in the build dir, then print the tarball's sha256 and size.

    `upload` is built by a store adapter with every value quoted, never from user input.
    """
    return (
        f"{{ {upload}\n}} || {{ echo 'putting the release into the store failed' >&2; exit 7; }}\n"
        f'echo "sha256=$(sha256sum <{TARBALL} | cut -c1-64)"\n'
        f'echo "size=$(wc -c <{TARBALL})"\n'
    )


def parse_upload(output: str) -> tuple[str, int]:
    fields = dict(line.partition("=")[::2] for line in output.splitlines() if "=" in line)
    return fields.get("sha256", "").strip(), int(fields.get("size", "0").strip() or 0)
