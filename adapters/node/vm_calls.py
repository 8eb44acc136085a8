"""Asking the release's running VM without booting another: `sh` functions around `erl_call`.

`bin/<app> rpc` boots a second, short-lived VM on the node (~0.35 s of CPU, seconds on a
loaded machine) for each question. `erl_call`, a small C program every release's erts ships
(`erts-*/bin/erl_call`), speaks the distribution protocol itself: it asks the running VM in a
few milliseconds. The functions below are pasted into node scripts that also define `vms`
(node_scripts) and set `$S` (the node's `.edeliver` dir); they run from a release root.

- `beam_of RUNNING pid|arg`: the release VM's pid, or what `node_arg` says.
- `node_arg RUNNING`: the release VM's `-sname NAME` or `-name NAME@HOST`, read from its
  command line in `vms` output (a console's or an rpc VM's is not it).
- `vm_call EXPR`: evaluates the Erlang expression in that VM; its value, as erl_call prints it,
  in `$said`. Exit 2 when it cannot ask: no erl_call, no distribution, no `releases/COOKIE`,
  or a cookie set otherwise (`RELEASE_COOKIE`): callers then fall back on `rpc`. The cookie
  reaches erl_call as `.erlang.cookie` in a private HOME, never on a command line.
- `vm_eval PRE POST`: evaluates Elixir code in the VM (`PRE` and `POST` from `eval_words`),
  what it printed on stdout; exit 1 when the code raised (what it printed, then the
  exception, on stderr), 2 as above.
- `vm_change PRE POST ELIXIR`: `vm_eval` for code that changes what runs (install_release,
  make_permanent); `bin/$APP rpc ELIXIR` only when erl_call could not ask or reach the VM
  (its connect failed: no VM, no epmd, another cookie), never once the VM may have run the
  code: an answer lost to a VM restarting is no reason to run an install_release a second
  time (exit 2, what erl_call said on stderr).
"""

from __future__ import annotations

import shlex

VM_CALLS = r"""
beam_of() {  # running what: of the release's VM (no remsh or rpc VM), its "pid" or its "arg"
  printf '%s\n' "$1" | awk -v what="$2" 'BEGIN { FS = "\037" } $2 ~ /beam/ && !/remsh|rpc-eval/ {
    if (what == "pid") { split($1, path, "/"); print path[3]; exit }
    for (i = 2; i < NF; i++) if ($i == "-sname" || $i == "-name") { print $i, $(i + 1); exit } }'
}
node_arg() { beam_of "$1" arg; }
vm_call() {
  e=$(ls erts-*/bin/erl_call 2>/dev/null | head -n 1); arg=$(node_arg "${running:-$(vms)}")
  [ -n "$e" ] && [ -n "$arg" ] && [ -f releases/COOKIE ] || return 2
  h="$S/erl_call.$$"; rm -rf "$h"
  (umask 077 && mkdir -p "$h" && cp releases/COOKIE "$h/.erlang.cookie") || return 2
  said=$(printf '%s\n' "$1" | HOME="$h" "$e" $arg -e 2>&1); rc=$?; rm -rf "$h"
  [ "$rc" -eq 0 ] && case "$said" in "{ok, "*) return 0 ;; esac
  return 2
}
vm_eval() {
  o="$S/vm_eval.$$.out"; rm -f "$o"
  path=$(printf '%s' "$o" | sed 's/[\\"]/\\&/g')
  vm_call "$1$path$2" || { rm -f "$o"; return 2; }
  if [ "$said" = "{ok, ok}" ]; then cat "$o"; rm -f "$o"; return 0; fi
  cat "$o" >&2; rm -f "$o"; return 1
}
vm_change() {
  said=; vm_eval "$1" "$2"; rc=$?
  [ "$rc" -eq 2 ] || return "$rc"
  case "$said" in
    "" | *"failed to connect"* | *"node is not running"* | *"no epmd"*) bin/"$APP" rpc "$3" ;;
    *) printf '%s\n' "$said" >&2; return 2 ;;
  esac
}
"""

# Waits in the VM (up to 10 s) for the app, as RPC_HEALTH does: vsn, OS pid, root inode.
_HEALTH = (
    "W = fun W(0) -> not_started; W(N) -> case lists:keyfind(%s, 1, "
    "application:which_applications()) of {_, _, V} -> {V, os:getpid(), element(12, "
    "element(2, file:read_file_info(code:root_dir())))}; false -> timer:sleep(50), W(N - 1) "
    "end end, W(200)."
)

# vm_health APP: exit 0 printing what RPC_HEALTH prints (the vsn, `edeliver_vm=<pid> <inode>`),
# 1 when the VM answered that the app is not started, 2 when it could not be asked.
VM_HEALTH = (
    r"""
vm_health() {
  vm_call "$(printf '"""
    + _HEALTH
    + r"""' "$1")" || return 2
  case "$said" in
    "{ok, not_started}") echo "$1 is not started"; return 1 ;;
  esac
  printf '%s\n' "$said" |
    sed -n 's/^{ok, {"\([^"]*\)", *"\([0-9]*\)", *\([0-9]*\)}}$/\1\nedeliver_vm=\2 \3/p'
}
"""
)


def eval_words(elixir: str) -> str:
    """`vm_eval`'s two arguments, quoted, for the Elixir code `elixir`: an Erlang expression
    that evaluates it with its output going to the file whose path goes between them."""
    source = elixir.replace("\\", "\\\\").replace('"', '\\"')
    pre = '{ok, D} = file:open(<<"'
    post = (
        '"/utf8>>, [write, {encoding, utf8}]), group_leader(D, self()), '
        "R = try 'Elixir.Code':eval_string(<<\"" + source + '"/utf8>>), ok '
        "catch C:E -> io:put_chars(D, 'Elixir.Exception':format(C, E, [])), error end, "
        "file:close(D), R."
    )
    return f"{shlex.quote(pre)} {shlex.quote(post)}"
