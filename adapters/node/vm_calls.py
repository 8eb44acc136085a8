"""Asking the release's running VM without booting another: `sh` functions around `erl_call`.

`bin/<app> rpc` boots a second, short-lived VM on the node (~0.35 s of CPU, seconds on a
loaded machine) for each question. `erl_call`, a small C program every release's erts ships
(`erts-*/bin/erl_call`), speaks the distribution protocol itself: it asks the running VM in a
few milliseconds. The functions below are pasted into node scripts that also define `vms`
(node_scripts) and set `$S` (the node's `.edeliver` dir); they run from a release root.

- `release_vm RUNNING`: sets `vm_pid` to the release VM's pid and `arg` to its `-sname NAME`
  or `-name NAME@HOST`, read from `vms` output (a console's or an rpc VM's is not it); both
  empty when there is none.
- `vm_call EXPR`: evaluates the Erlang expression in that VM (the one named by `$VM_DIST`, its
  `-sname NAME` as a probe found it, when the script sets it: then no process reads `/proc`
  again); its value, as erl_call prints it,
  in `$said`. Exit 2 when it cannot ask: no erl_call, no distribution, no `releases/COOKIE`,
  or a cookie set otherwise (`RELEASE_COOKIE`): callers then fall back on `rpc`. The cookie
  reaches erl_call as `.erlang.cookie` in a private HOME (`$S/erl_call`, mode 700, copied
  again when the release's cookie differs), never on a command line.
- `vm_eval PRE POST`: evaluates Elixir code in the VM (`PRE` and `POST` from `eval_words`),
  what it printed on stdout; exit 1 when the code raised (what it printed, then the
  exception, on stderr), 2 as above.
- `vm_change PRE POST ELIXIR`: `vm_eval` for code that changes what runs (install_release,
  make_permanent); `bin/$APP rpc ELIXIR` only when erl_call could not ask or reach the VM
  (its connect failed: no VM, no epmd, another cookie), never once the VM may have run the
  code: an answer lost to a VM restarting is no reason to run an install_release a second
  time (exit 2, what erl_call said on stderr).

Every process a script starts costs the node ~1 ms of CPU, and a hot upgrade asks each VM
several times: these functions start none but erl_call (and `cat` and `rm` of an eval's
output; the cookie's copy only when it changed), reading with `read`, globs and parameter
expansion where `ls`, `awk`, `sed` and a fresh HOME per call did.
"""

from __future__ import annotations

import shlex

US = "\037"  # the separator of `vms` fields, as the script's text holds it

VM_CALLS = (
    r"""
release_vm() {  # running: sets vm_pid and arg (`-sname NAME`) of the release's VM, or empties
  vm_pid=; arg=
  while IFS= read -r vm_line; do
    case $vm_line in *remsh*|*rpc-eval*) continue ;; esac
    IFS='"""
    + US
    + r"""'; set -f; set -- $vm_line; set +f; unset IFS
    case ${2-} in *beam*) ;; *) continue ;; esac
    [ -n "$vm_pid" ] || { vm_pid=${1#*/proc/}; vm_pid=${vm_pid%%/*}; }
    shift
    while [ $# -gt 1 ]; do
      case $1 in -sname|-name) arg="$1 $2"; return 0 ;; esac
      shift
    done
  done <<EOF
$1
EOF
}
vm_call() {
  e=; for f in erts-*/bin/erl_call; do [ -x "$f" ] && { e=$f; break; }; done
  if [ -n "${VM_DIST-}" ]; then arg=$VM_DIST; else release_vm "${running:-$(vms)}"; fi
  [ -n "$e" ] && [ -n "$arg" ] && [ -f releases/COOKIE ] || return 2
  h="$S/erl_call"; cookie=; copied=
  IFS= read -r cookie <releases/COOKIE; IFS= read -r copied 2>/dev/null <"$h/.erlang.cookie"
  if [ -z "$cookie" ] || [ "$cookie" != "$copied" ]; then
    (umask 077 && mkdir -p "$h" && cp releases/COOKIE "$h/c.$$" &&
      mv -f "$h/c.$$" "$h/.erlang.cookie") || return 2
  fi
  said=$(HOME="$h" "$e" $arg -e 2>&1 <<EOF
$1
EOF
); rc=$?
  [ "$rc" -eq 0 ] && case "$said" in "{ok, "*) return 0 ;; esac
  return 2
}
vm_eval() {
  o="$S/vm_eval.$$.out"; path=$o
  case $o in *[\\\"]*) path=$(printf '%s' "$o" | sed 's/[\\"]/\\&/g') ;; esac
  vm_call "$1$path$2" || { rm -f "$o"; return 2; }
  if [ "$said" = "{ok, ok}" ]; then said_out <"$o"; rm -f "$o"; return 0; fi
  said_out <"$o" >&2; rm -f "$o"; return 1
}
said_out() {  # what the evaluation printed (a few lines): by `read`, not a `cat` process
  while IFS= read -r out_line || [ -n "$out_line" ]; do printf '%s\n' "$out_line"; done
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
)

# Waits in the VM (up to 10 s) for the app, as RPC_HEALTH does: vsn, OS pid, root inode.
_HEALTH = (
    "W = fun W(0) -> not_started; W(N) -> case lists:keyfind(%s, 1, "
    "application:which_applications()) of {_, _, V} -> {V, os:getpid(), element(12, "
    "element(2, file:read_file_info(code:root_dir())))}; false -> timer:sleep(50), W(N - 1) "
    "end end, W(200)."
)

# vm_health APP: exit 0 printing what RPC_HEALTH prints (the vsn, `edeliver_vm=<pid> <inode>`),
# 1 when the VM answered that the app is not started, 2 when it could not be asked. The answer,
# `{ok, {"<vsn>", "<pid>", <inode>}}`, is taken apart by parameter expansion.
VM_HEALTH = (
    r"""
vm_health() {
  vm_call '"""
    + _HEALTH.replace("%s", "'\"$1\"'")
    + r"""' || return 2
  case "$said" in
    "{ok, not_started}") echo "$1 is not started"; return 1 ;;
    '{ok, {"'*'", "'*'", '*'}}') ;;
    *) return 0 ;;
  esac
  vsn=${said#\{ok, \{\"}; os_pid=${vsn#*\", \"}; vsn=${vsn%%\"*}
  inode=${os_pid#*\", }; os_pid=${os_pid%%\"*}; inode=${inode%\}\}}
  case $os_pid$inode in ''|*[!0-9]*) return 0 ;; esac
  printf '%s\nedeliver_vm=%s %s\n' "$vsn" "$os_pid" "$inode"
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
