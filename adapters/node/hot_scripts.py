"""The node side of hot upgrades: `sh` scripts that drive `release_handler` in the running VM.

Pure builders and parsers, like `node_scripts`. Every release_handler call runs inside the
node's own VM (asked by `erl_call`, see `vm_calls`; by `bin/<app> rpc` where it cannot ask),
where `:code.root_dir()` is the live release root: the root `current` points to, which holds
every version installed hot (DESIGN §6). Both exit 0 even when release_handler answers
`{:error, …}`, so each snippet prints `edeliver=…` lines to parse and raises (exit 1) on
anything unexpected. Versions are checked by `checked_version` (no quotes or backslashes)
before they go into an Elixir string literal; the whole snippet is
`shlex.quote`d into the script.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edeliver.adapters.node.install_scripts import private_cookies
from edeliver.adapters.node.node_lock import generation_guard
from edeliver.adapters.node.node_scripts import Layout, checked_version, q
from edeliver.adapters.node.node_state import VMS, uploads_under
from edeliver.adapters.node.vm_calls import VM_CALLS, eval_words

# Which versions release_handler knows on the node, with their status; first the VM's own
# boot script (which is what a node without a RELEASES file would be running).
_RELEASES = (
    '{_, booted} = :init.script_id(); IO.puts("edeliver=booted #{booted}"); '
    "for {_, v, _, s} <- :release_handler.which_releases(), "
    'do: IO.puts("edeliver=release #{v} #{s}")'
)

# A node started without releases/RELEASES (every node deployed before Edeliver created it at
# build time) gets a stub that breaks the later downgrade (hot-upgrades.md P1): create it from
# the booted release, and restart release_handler so it reads it; the node itself keeps running.
_ENSURE_RELEASES = """
root = to_string(:code.root_dir())
dir = Path.join(root, "releases")
unless File.exists?(Path.join(dir, "RELEASES")) do
  {name, vsn} = :init.script_id()
  rel = Path.join([dir, to_string(vsn), "#{name}.rel"])
  :ok = :release_handler.create_RELEASES(to_charlist(dir), to_charlist(rel), [])
  :ok = :supervisor.terminate_child(:sasl_sup, :release_handler)
  {:ok, _} = :supervisor.restart_child(:sasl_sup, :release_handler)
  IO.puts("edeliver=created RELEASES")
end
"""

# runtime.exs values are wiped by install_release unless the new sys.config carries them
# (P6): evaluate the new runtime.exs here, in the running VM (its environment, its files), and
# merge it into releases/<vsn>/sys.config, keeping the `%%` header lines mix reads at boot.
_RENDER_SYS_CONFIG = """
dir = Path.join([to_string(:code.root_dir()), "releases", vsn])
runtime = Path.join(dir, "runtime.exs")
if File.exists?(runtime) do
  sys = Path.join(dir, "sys.config")
  {:ok, [config]} = :file.consult(to_charlist(sys))
  merged = Config.Reader.merge(config, Config.Reader.read!(runtime, env: :prod, target: :host))
  lines = sys |> File.read!() |> String.split("\\n")
  header = Enum.take_while(lines, &String.starts_with?(&1, "%%"))
  term = :io_lib.format(~c"~tp.~n", [merged])
  File.write!(sys <> ".new", [Enum.join(header, "\\n"), "\\n", term])
  File.rename!(sys <> ".new", sys)
  IO.puts("edeliver=rendered runtime.exs")
end
"""

_STATUS = """
status = fn v ->
  case List.keyfind(:release_handler.which_releases(), to_charlist(v), 1) do
    {_, _, _, s} -> s
    nil -> nil
  end
end
"""

_UNPACK = """
if status.(vsn) == nil do
  case :release_handler.unpack_release(to_charlist(package)) do
    {:ok, _} -> IO.puts("edeliver=unpacked")
    {:error, reason} -> raise "unpack_release #{package} failed: #{inspect(reason)}"
  end
end
"""

_CHECK = """
if status.(vsn) == :unpacked do
  case :release_handler.check_install_release(to_charlist(vsn)) do
    {:ok, _, _} -> IO.puts("edeliver=checked")
    {:error, reason} -> raise "check_install_release #{vsn} failed: #{inspect(reason)}"
  end
end
"""

# install_release runs the relup (up from the running version, or the down section of the
# running version's relup); `current` afterwards. An error after the point of no return
# restarts the node in place into its permanent release (P7): say so, the caller reports it.
_INSTALL = """
rels = :release_handler.which_releases()
running = Enum.find_value(rels, fn {_, v, _, s} -> if s == :current, do: v end) ||
  Enum.find_value(rels, fn {_, v, _, s} -> if s == :permanent, do: v end)
if running != to_charlist(vsn) do
  case :release_handler.install_release(to_charlist(vsn)) do
    {:ok, from, _} -> IO.puts("edeliver=installed from #{from}")
    {:error, reason} -> IO.puts("edeliver=failed #{inspect(reason, limit: 20)}")
  end
end
"""

# Before the first wait for the app: fail at once when release_handler has the version only
# unpacked (or not at all), listing what it has; waiting cannot make it run.
_ACTIVATED = """
unless status.(vsn) in [:current, :permanent] do
  for {_, v, _, s} <- :release_handler.which_releases(), do: IO.puts("edeliver=release #{v} #{s}")
  IO.puts("edeliver=unactivated #{status.(vsn)}")
  raise "#{vsn} was not activated"
end
"""

# The app runs the wanted version (its vsn), then make it what a restart boots.
_PERMANENT = """
running = with {_, _, v} <- List.keyfind(Application.started_applications(), app, 0), do: v
if running != to_charlist(vsn), do: raise("#{app} #{vsn} is not running: #{inspect(running)}")
case status.(vsn) do
  :permanent -> :ok
  :current -> :ok = :release_handler.make_permanent(to_charlist(vsn))
  other -> raise "release #{vsn} is #{inspect(other)}, not current"
end
IO.puts("edeliver=permanent #{vsn}")
"""


@dataclass(frozen=True)
class Releases:
    """What release_handler on a node says: the booted version and each known release."""

    booted: str | None
    status: dict[str, str]  # version -> permanent | current | old | unpacked

    @property
    def running(self) -> str | None:
        """The version whose code runs: `current` if an install is not yet permanent."""
        by_status = {s: v for v, s in self.status.items()}
        return by_status.get("current") or by_status.get("permanent") or self.booted

    @property
    def permanent(self) -> str | None:
        return next((v for v, s in self.status.items() if s == "permanent"), self.booted)

    @property
    def newest_old(self) -> str | None:
        """The newest release the node ran before (which_releases lists newest first)."""
        return next((v for v, s in self.status.items() if s == "old"), None)


def parse_releases(output: str) -> Releases:
    booted, status = None, {}
    for line in _said(output):
        word, _, rest = line.partition(" ")
        if word == "booted":
            booted = rest.strip()
        elif word == "release" and len(rest.split()) == 2:
            version, state = rest.split()
            status[version] = state
    return Releases(booted, status)


def _said(output: str) -> list[str]:
    return [line[9:] for line in output.splitlines() if line.startswith("edeliver=")]


def installed_from(output: str) -> tuple[bool, str]:
    """(True, from-version) after install_release, (False, the reason it gave) on failure;
    (True, "") when it was already installed."""
    for line in _said(output):
        word, _, rest = line.partition(" ")
        if word == "installed":
            return True, rest.removeprefix("from ")
        if word == "failed":
            return False, rest
    return True, ""


def _rpc(elixir: str, vm: str | None = None) -> str:
    """Run `elixir` in the node's VM from the live root; a node with no VM fails (exit 1).
    Asked by `erl_call` (no VM boots, see `vm_calls`); `bin/<app> rpc` where it cannot ask.
    `vm`: the VM's distribution flag as the probe found it (`vm_dist`), else it is looked for."""
    return f'{VMS}{VM_CALLS}{_vm_dist(vm)}cd "$P/current" || exit 3\n{_ask(elixir)}\n'


# A VM's distribution flag as erl_call takes it: `-sname NAME` or `-name NAME@HOST`.
_DIST = re.compile(r"-s?name [A-Za-z0-9_.@-]+")


def _vm_dist(vm: str | None) -> str:
    """`VM_DIST=...` for `vm_call` when `vm` is a distribution flag, else nothing."""
    return f"VM_DIST={q(vm)}\n" if vm and _DIST.fullmatch(vm) else ""


def reported_vm_dist(output: str) -> str | None:
    """The release VM's distribution flag a `releases_report` printed, when it is one."""
    said = [line[8:] for line in output.splitlines() if line.startswith("vm_dist=")]
    return said[0] if said and _DIST.fullmatch(said[0]) else None


def _ask(elixir: str) -> str:
    return f'vm_eval {eval_words(elixir)} || {{ [ $? -eq 2 ] && bin/"$APP" rpc {q(elixir)}; }}'


def _bindings(layout: Layout, version: str) -> str:
    v = checked_version(version)
    return f'app = :{layout.app}\nvsn = "{v}"\npackage = "{layout.app}-{v}"\n' + _STATUS


def releases_script(layout: Layout) -> str:
    """Print the booted version and release_handler's releases (exit 1: no VM answered)."""
    return layout.prelude() + _rpc(_RELEASES)


def releases_report(layout: Layout, version: str | None = None) -> str:
    """To follow a probe (its prelude's variables, the `running` its `vms` said): when a
    release VM runs, its distribution flag (`vm_dist=-sname NAME`), release_handler's view as
    `releases_script` prints it, then `releases_rc=<exit>`; nothing when none runs. The
    script's own exit stays the probe's. With the `version` to upgrade to, first what is at
    the upload path of any package to it (`node_state.uploads_under`)."""
    packages = uploads_under(f'"$U/$APP-"{q(checked_version(version))}"-from-"') if version else ""
    return (
        f"APP={q(layout.app)}\n{packages}{VM_CALLS}"
        'release_vm "$running"\n'
        'if [ -n "$vm_pid" ] && cd "$P/current" 2>/dev/null; then\n'
        f'  echo "vm_dist=$arg"; {_ask(_RELEASES)}\n  echo "releases_rc=$?"\nfi\n'
    )


def reported_releases(output: str) -> Releases | None:
    """release_handler's view from a `releases_report`; None when no VM answered."""
    codes = [line[12:] for line in output.splitlines() if line.startswith("releases_rc=")]
    releases = parse_releases(output)
    return releases if codes == ["0"] and releases.booted else None


def unpack_script(layout: Layout, version: str, upload: str, vm: str | None = None) -> str:
    """Put the verified package where release_handler looks, unpack, render, check (in the VM
    `vm` names, see `_rpc`)."""
    elixir = _bindings(layout, version) + _ENSURE_RELEASES + _UNPACK + _RENDER_SYS_CONFIG + _CHECK
    return layout.prelude() + (
        f"V={q(checked_version(version))}; F={q(upload)}\n"
        'ROOT=$(cd "$P/current" && pwd -P) || exit 3\n'
        # release_handler deletes the tarball it unpacked: give it a copy, keep the upload.
        'T="$ROOT/releases/$APP-$V.tar.gz"\n'
        'if [ ! -d "$ROOT/releases/$V" ]; then\n'
        '  (umask 077 && cp "$F" "$T.partial") && mv -f "$T.partial" "$T" || exit 3\n'
        "fi\n" + _rpc(elixir, vm).rstrip("\n") + " || exit $?\n" + private_cookies('"$ROOT"')
    )


def install_script(
    layout: Layout, version: str, generation: int | None = None, vm: str | None = None
) -> str:
    """install_release of `version` unless it is already current or permanent; with a
    `generation`, only while the node's lock is held at it (else exit 9, nothing changed)."""
    return _guarded_rpc(layout, _bindings(layout, version) + _INSTALL, generation, vm)


def permanent_script(
    layout: Layout,
    version: str,
    generation: int | None = None,
    *,
    activated: bool = False,
    vm: str | None = None,
) -> str:
    """Check the app runs `version`, then make_permanent (unless it is already); guarded by
    the lock's `generation` like `install_script`. With `activated`, first check that
    release_handler has `version` current or permanent (else `unactivated` says why)."""
    check = _ACTIVATED if activated else ""
    elixir = _bindings(layout, version) + check + _PERMANENT
    return _guarded_rpc(layout, elixir, generation, vm)


def unactivated(output: str) -> Releases | None:
    """What release_handler has, when a `permanent_script(..., activated=True)` found the
    version not activated; None otherwise."""
    if not any(line.startswith("unactivated") for line in _said(output)):
        return None
    return parse_releases(output)


def _guarded_rpc(layout: Layout, elixir: str, generation: int | None, vm: str | None) -> str:
    """An `rpc` that changes what runs: like a switch, a stale deployer's is refused. Asked
    by `erl_call` like `_rpc` (no VM boots), `bin/<app> rpc` only where it cannot reach the
    VM (`vm_change`)."""
    return (
        layout.prelude()
        + generation_guard(generation)
        + f'{VMS}{VM_CALLS}{_vm_dist(vm)}cd "$P/current" || exit 3\n'
        + f"guarded vm_change {eval_words(elixir)} {q(elixir)}\n"
    )
