"""Tasks on real nodes (DESIGN §7): each `where`, an .exs migration once per deployment, an
`initial` task, cleanups when a critical task fails under one_for_all + rollback, and a legacy
edeliver 1.x `.deliver/config` whose hooks leave marks in 1.x order, before and after
`edeliver migrate-config`. What ran is read from the nodes themselves, over OpenSSH."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from edeliver.adapters.node.local_fleet import LocalFleet
from edeliver.cli.demo import prepare_project
from tests.support.faults_tasks import write_tasks
from tests.support.hello_release import put_in_local_store
from tests.support.nodes import running_versions, ssh

EDELIVER = [sys.executable, "-m", "edeliver.cli"]
FIRST, SECOND = "0.1.0", "0.2.0"
WAVES = (
    '[environments.waves]\nnodes = ["staging1", "staging2", "staging3"]\n'
    'max_parallel = 1\nstrategy = "one_for_all"\nfallback = "rollback"\n'
)


class Project:
    def __init__(self, directory: Path, fleet: LocalFleet) -> None:
        self.directory, self.fleet = directory, fleet

    def edeliver(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*EDELIVER, "-C", str(self.directory), *args],
            capture_output=True, text=True, timeout=600, check=False,
            env={**os.environ, **(env or {})},
        )  # fmt: skip

    def tasks(self, files: dict[str, str]) -> None:
        write_tasks(self.directory, files)

    def on_node(self, name: str, command: str) -> str:
        done = ssh(self.fleet, self.fleet.node(name), command)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def shared_file(self, name: str, file: str) -> list[str]:
        path = self.fleet.node(name).path
        return self.on_node(name, f"cat {path}/shared/{file} 2>/dev/null || true").splitlines()


@contextmanager
def three_node_project(root: Path, name_prefix: str) -> Iterator[Project]:
    """hello on 3 real nodes `<name_prefix>1..3`: environments `staging` (all at once) and
    `waves` (one_for_all + rollback, one node at a time); FIRST and SECOND in the store."""
    fleet = LocalFleet(root / "fleet", 3, name_prefix=name_prefix)
    fleet.start()
    try:
        directory = prepare_project(root, fleet, "staging", "max_parallel = 3")
        with (directory / ".deliver/edeliver.toml").open("a") as config:
            config.write("\n" + WAVES.replace("staging", name_prefix))
        put_in_local_store(directory, [(FIRST, "good"), (SECOND, "good")])
        yield Project(directory, fleet)
    finally:
        fleet.stop()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    with three_node_project(tmp_path_factory.mktemp("e2e-tasks"), "staging") as project:
        yield project


WHERE_TASKS = {
    "10_node/mark.sh": (
        "#!/bin/sh\n# stage: post_extract_release_archive\n"
        'mkdir -p "$DEPLOY_PATH/shared"\n'
        'echo "node $VERSION $NODE" >> "$DEPLOY_PATH/shared/marks"\n'
    ),
    "20_migrate.exs": (
        "# stage: post_extract_release_archive\n# where: once\n"
        'log = Path.join(System.fetch_env!("DEPLOY_PATH"), "shared/migrations")\n'
        'File.write!(log, "migrated to #{Hello.version()}\\n", [:append])\n'
    ),
    "30_local.py": (
        "from edeliver import task\n\n"
        "@task('pre_start_deployed_release', where='local')\n"
        "def note(ctx):\n"
        "    ctx.run(f'echo {ctx.node.name} {ctx.release} >> local_marks')\n"
        "    return ctx\n"
    ),
    "40_initial.sh": (
        "# stage: post_start_deployed_release\n# optional: initial\n"
        'echo "initial $VERSION" >> "$DEPLOY_PATH/shared/initial"\n'
    ),
    "50_check.py": (
        "from edeliver import task\n\n"
        "@task('post_start_deployed_release')\n"
        "def check(ctx):\n"
        "    said = ctx.run(\"cd current && bin/hello rpc 'IO.puts(Hello.version())'\")\n"
        "    ctx.run(f'echo running {said.strip()} >> shared/checked')\n"
        "    return ctx.assign(running=said.strip())\n"
    ),
}


def test_tasks_run_at_their_stage_in_each_where(project: Project) -> None:
    project.tasks(WHERE_TASKS)
    names = project.fleet.names
    for version in (FIRST, SECOND):
        result = project.edeliver("deploy", "staging", "--version", version, "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        for node in names:
            assert project.shared_file(node, "marks")[-1] == f"node {version} {node}"
            assert project.shared_file(node, "checked")[-1] == f"running {version}"
        local = (project.directory / "local_marks").read_text().splitlines()
        assert sorted(local[-3:]) == [f"{n} {version}" for n in names]
    migrations = [line for n in names for line in project.shared_file(n, "migrations")]
    assert sorted(migrations) == [f"migrated to {FIRST}", f"migrated to {SECOND}"]
    for node in names:  # initial: the first deploy only
        assert project.shared_file(node, "initial") == [f"initial {FIRST}"]
    assert set(running_versions(project.fleet).values()) == {SECOND}


def test_the_task_runs_are_in_the_event_log(project: Project) -> None:
    log = project.edeliver("log", "--json")
    assert log.returncode == 0, log.stderr
    runs = [json.loads(line) for line in log.stdout.splitlines()]
    ran = [e for e in runs if e.get("event") == "TaskRan" or e.get("type") == "TaskRan"]
    assert {(e.get("task"), e.get("outcome")) for e in ran} >= {
        ("10_node/mark", "ok"),
        ("20_migrate", "ok"),
        ("50_check", "ok"),
    }


CLEANUP_TASKS = {
    "10_reserve.py": (  # the class form of a task
        "from edeliver import Task\n\n"
        "class Reserve(Task):\n"
        "    stage = 'post_extract_release_archive'\n\n"
        "    def run(self, ctx):\n"
        "        ctx.run(f'echo reserved {ctx.release} >> shared/reserve')\n"
        "        return ctx\n\n"
        "    def cleanup(self, ctx):\n"
        "        ctx.run(f'echo cleaned {ctx.release} >> shared/reserve')\n"
        "        return ctx\n"
    ),
    "20_gate.sh": (
        "# stage: post_extract_release_archive\n"
        'if [ "$NODE" = staging3 ]; then echo "schema check failed on $NODE"; exit 1; fi\n'
    ),
}


def test_a_failing_critical_task_rolls_back_and_cleans_up_where_the_task_ran(
    project: Project,
) -> None:
    project.tasks(CLEANUP_TASKS)
    result = project.edeliver("deploy", "waves", "--version", FIRST, "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert "schema check failed on staging3" in json.dumps(report)
    for node in project.fleet.names:  # each ran `reserve`, then the gate failed on staging3
        assert project.shared_file(node, "reserve") == [f"reserved {FIRST}", f"cleaned {FIRST}"]
    assert set(running_versions(project.fleet).values()) == {SECOND}


LEGACY_HOOKS = [
    "pre_erlang_update",
    "pre_extract_release_archive",
    "post_extract_release_archive",
    "pre_start_deployed_release",
    "post_start_deployed_release",
    "post_erlang_deployed_update",
    "post_erlang_update",
]


def _legacy_config(hosts: str, user: str) -> str:
    hooks = "".join(
        f'{hook}() {{\n  __remote "mkdir -p $DELIVER_TO/$APP/shared && '
        f'echo {hook} $VERSION >> $DELIVER_TO/$APP/shared/hooks"\n}}\n'
        for hook in LEGACY_HOOKS
    )
    return (
        f'APP="hello"\nSTAGING_HOSTS="{hosts}"\nSTAGING_USER="{user}"\nDELIVER_TO="/srv"\n{hooks}'
    )


def _hook_marks(project: Project, node: str, version: str) -> list[str]:
    return [line for line in project.shared_file(node, "hooks") if line.endswith(version)]


def test_legacy_hooks_leave_marks_in_edeliver_1_order(project: Project) -> None:
    project.tasks({})
    (project.directory / ".deliver/config").write_text(_legacy_config("unused", "unused"))
    result = project.edeliver("deploy", "staging", "--version", FIRST, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    for node in project.fleet.names:
        assert _hook_marks(project, node, FIRST) == [f"{hook} {FIRST}" for hook in LEGACY_HOOKS]
    listed = project.edeliver("tasks", "staging", "--json")
    stages = [s["stage"] for s in json.loads(listed.stdout)["stages"]]
    assert stages == LEGACY_HOOKS


def test_migrate_config_output_deploys_the_same_way(project: Project) -> None:
    (project.directory / ".deliver/config").write_text(
        _legacy_config("127.0.0.1 127.0.0.1 127.0.0.1", "deploy")
    )
    toml = project.directory / ".deliver/edeliver.toml"
    toml.unlink()
    migrated = project.edeliver("migrate-config", "--write")
    assert migrated.returncode == 0, migrated.stderr
    for hook in LEGACY_HOOKS:
        assert f"hook {hook}: found" in migrated.stderr
    text = toml.read_text()
    assert 'strategy = "one_for_all"' in text and 'path = "/srv/hello"' in text
    # edeliver 1.x took ports, users and keys from ~/.ssh/config; these nodes all listen on
    # 127.0.0.1, so say per node what that file would have said.
    for node in project.fleet.nodes:
        table = f'[nodes.{node.name}]\nhost = "127.0.0.1"\npath = "/srv/hello"\nuser = "deploy"\n'
        assert table in text
        text = text.replace(table, project.fleet.toml_node(node))
    toml.write_text(f'known_hosts = "{project.fleet.known_hosts}"\n' + text)
    result = project.edeliver("deploy", "staging", "--version", SECOND, "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    for node in project.fleet.names:
        assert _hook_marks(project, node, SECOND) == [f"{h} {SECOND}" for h in LEGACY_HOOKS]
    assert set(running_versions(project.fleet).values()) == {SECOND}
    assert re.search(r"\[environments\.staging\]", text)


BUILD_STAGES = [
    "pre_erlang_clean_compile",
    "post_erlang_clean_compile",
    "pre_erlang_generate_release",
    "post_erlang_generate_release",
]


def test_build_stages_run_their_tasks_around_compile_and_release(project: Project) -> None:
    (project.directory / ".deliver/config").unlink(missing_ok=True)
    project.tasks(
        {
            f"{i}_{stage}.sh": f'# stage: {stage}\n# where: build\necho "$STAGE" >> build_marks\n'
            for i, stage in enumerate(BUILD_STAGES)
        }
    )
    built = project.edeliver("build", env={"HELLO_VERSION": "0.9.1", "HEX_OFFLINE": "1"})
    assert built.returncode == 0, built.stdout + built.stderr
    marks = (project.directory / "build_marks").read_text().split("\n")
    assert [m for m in marks if m] == BUILD_STAGES
    project.tasks({"gate.sh": "# stage: pre_erlang_clean_compile\n# where: build\nexit 5\n"})
    failed = project.edeliver("build", env={"HELLO_VERSION": "0.9.2", "HEX_OFFLINE": "1"})
    assert failed.returncode == 1
    assert "task gate failed at pre_erlang_clean_compile" in failed.stderr
    stored = project.edeliver("deploy", "staging", "--version", "0.9.2")
    assert stored.returncode == 2 and "0.9.2" in stored.stderr  # nothing was stored


def test_auto_version_builds_a_version_of_its_own_that_nodes_run(project: Project) -> None:
    """`[build] auto_version`: the mix version plus the commit count and short revision; the
    release, the store and the running nodes all carry it (mix.exs is left as it is)."""
    project.tasks({})
    git = ["git", "-C", str(project.directory), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "one"], check=True)
    revision = subprocess.run(
        [*git, "rev-parse", "--short=7", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    toml = project.directory / ".deliver/edeliver.toml"
    text = toml.read_text()
    toml.write_text(text + '\n[build]\nauto_version = ["commit_count", "revision"]\n')
    try:
        built = project.edeliver("build", "--json", env={"HELLO_VERSION": "0.7.0"})
        assert built.returncode == 0, built.stdout + built.stderr
        version = json.loads(built.stdout)["version"]
        assert version == f"0.7.0+1.{revision}"
        result = project.edeliver("deploy", "staging", "--version", version, "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        assert set(running_versions(project.fleet).values()) == {version}
    finally:
        toml.write_text(text)
