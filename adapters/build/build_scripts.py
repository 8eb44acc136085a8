"""The build side of remote and container builds: one POSIX `sh` script and its parser.

The same script runs on a build host over SSH and inside a container: it fetches the deps,
compiles, and builds the release with `mix release` in the unpacked sources (every `mix` run
through edeliver's Mix tasks in `build_tasks.exs`; local builds run the same argv), packs it
like `mix_build.pack_release` does (entries `bin/ erts-*/ lib/ releases/`, no `./` prefix), and
prints what the manifest records: version, ERTS, OTP and Elixir versions and the build
platform, in the form node probes report it, and what `build_checks` checks of the contents.
Pure functions only; every value put into the script is quoted.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edeliver.adapters.node.node_state import parse_libc
from edeliver.core.domain.model import Artifact, Platform

q = shlex.quote
OUT = "_edeliver"  # in the sources dir: release/, release.tar.gz, build.log
TARBALL = f"{OUT}/release.tar.gz"
BUILD_FAILED = 9  # the script's exit status when `mix` failed; stderr has the log's tail
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
LOG_LINES = 20

# Mix tasks loaded with `elixir -r` before every `mix` run: the auto-version suffix, the release
# name check and the removal of stale `.app` files (see the file's comments).
BUILD_TASKS_FILE = Path(__file__).with_name("build_tasks.exs")
TASK_FILE = f"{OUT}/build_tasks.exs"
VERSION_SUFFIX = "EDELIVER_VERSION_SUFFIX"
DEPS_FAILED = 10  # the script's exit status when `mix deps.get` failed
CACHED = ("deps", "_build")  # what remote and container builds keep per app between builds


@dataclass(frozen=True)
class MixTarget:
    """What to build: the MIX_ENV and the name of a release of mix.exs ("": mix's default)."""

    mix_env: str = "prod"
    release: str = ""


PROD = MixTarget()


def build_tasks() -> str:
    return BUILD_TASKS_FILE.read_text()


def mix_argv(tasks: list[list[str]], task_file: str) -> list[str]:
    """`mix do TASK, TASK...` with edeliver's build tasks loaded first."""
    chained = [word for task in tasks for word in (*task[:-1], task[-1] + ",")]
    chained[-1] = chained[-1].removesuffix(",")
    return ["elixir", "-r", task_file, "-S", "mix", "do", *chained]


def deps_argv(target: MixTarget, task_file: str) -> list[str]:
    """Check the release name, then fetch the dependencies of the MIX_ENV."""
    check = ["edeliver.release", *([target.release] if target.release else [])]
    return mix_argv([check, ["deps.get", "--only", target.mix_env]], task_file)


def compile_argv(task_file: str) -> list[str]:
    """Compile at the build's version, the project's stale `.app` files removed first and an
    umbrella's children given the auto_version suffix after."""
    steps = [["edeliver.version"], ["edeliver.fresh"], ["compile"], ["edeliver.children"]]
    return mix_argv(steps, task_file)


def release_argv(target: MixTarget, task_file: str, path: str) -> list[str]:
    named = [target.release] if target.release else []
    release = ["release", *named, "--path", path, "--overwrite"]
    return mix_argv([["edeliver.version"], release], task_file)


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
echo "releases=$(ls releases | tr '\n' ' ')"
echo "lib=$(ls lib | tr '\n' ' ')"
for app in lib/*/ebin/*.app; do
  echo "vsn:$app=$(sed -n 's/.*{vsn, *"\([^"]*\)".*/\1/p' "$app" | head -n 1)"
done
"""


@dataclass(frozen=True)
class BuildFacts:
    version: str
    erts: str
    otp: str
    elixir: str
    platform: Platform
    releases: tuple[str, ...] = ()  # the entries of the release's releases/ dir
    lib: tuple[str, ...] = ()  # the entries of its lib/ dir, name-version
    vsn: Mapping[str, str] = field(default_factory=dict)  # lib/<a>-<v>/ebin/<a>.app: its vsn


def build_script(env: Mapping[str, str], target: MixTarget = PROD) -> str:
    """Build in the current dir (the unpacked sources) in one run: deps, compile, release."""
    return deps_script(env, target) + compile_script(env, target) + release_script(env, target)


def deps_script(env: Mapping[str, str], target: MixTarget) -> str:
    """The first part of a build: a fresh output dir, the release name checked, then
    `mix deps.get --only MIX_ENV`; on failure, exit DEPS_FAILED with the log's tail."""
    return (
        _prelude(env, target)
        + 'rm -rf "$O" && mkdir -p "$O" || exit 3\n'
        + f"printf '%s' {q(build_tasks())} > {q(TASK_FILE)} || exit 3\n"
        + _mix_or_fail(deps_argv(target, TASK_FILE), DEPS_FAILED)
    )


def compile_script(env: Mapping[str, str], target: MixTarget) -> str:
    """The second part: `mix compile` at the build's version. Build-stage tasks may run
    between the parts."""
    return _prelude(env, target) + _mix_or_fail(compile_argv(TASK_FILE), BUILD_FAILED)


def release_script(env: Mapping[str, str], target: MixTarget) -> str:
    """The last part: `mix release` into a fresh dir, packed, then the facts the manifest
    records and the contents `check_contents` checks."""
    argv = release_argv(target, TASK_FILE, f"{OUT}/release")
    return (
        _prelude(env, target) + _mix_or_fail(argv, BUILD_FAILED) + 'cd "$O/release" || exit 3\n'
        "tar -czf ../release.tar.gz bin lib releases erts-* || exit 3\n" + facts_script()
    )


def _prelude(env: Mapping[str, str], target: MixTarget) -> str:
    exports = "".join(f"export {_env_name(k)}={q(v)}\n" for k, v in sorted(env.items()))
    return f"set -u\nexport MIX_ENV={q(target.mix_env)}\n" + exports + f"O={q(OUT)}\n"


def _mix_or_fail(argv: list[str], status: int) -> str:
    mix = " ".join(q(a) for a in argv)
    return (
        f'if ! {mix} >>"$O/build.log" 2>&1; then\n'
        f'  tail -n {LOG_LINES} "$O/build.log" >&2; exit {status}\n'
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
        tuple(fields.get("releases", "").split()),
        tuple(fields.get("lib", "").split()),
        {k.removeprefix("vsn:"): v.strip() for k, v in fields.items() if k.startswith("vsn:")},
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
