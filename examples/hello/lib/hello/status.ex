defmodule Hello.Status do
  @moduledoc """
  A status file for cheap health checks: `${RELEASE_TMP:-$RELEASE_ROOT/tmp}/hello.status`,
  written once the supervision tree is up and deleted when the app begins to stop.
  Content, one `key=value` per line: `pid=<OS pid>`, `version=<boot version>`, `node=<node>`.
  """

  @spec path() :: Path.t()
  def path do
    root = System.get_env("RELEASE_ROOT") || List.to_string(:code.root_dir())
    tmp = System.get_env("RELEASE_TMP") || Path.join(root, "tmp")
    Path.join(tmp, "hello.status")
  end

  @spec write() :: :ok
  def write do
    file = path()
    partial = file <> ".partial"
    content = "pid=#{System.pid()}\nversion=#{Hello.version()}\nnode=#{node()}\n"
    File.mkdir_p!(Path.dirname(file))
    File.write!(partial, content)
    File.rename!(partial, file)
  end

  @spec delete() :: :ok
  def delete do
    _ = File.rm(path())
    :ok
  end
end
