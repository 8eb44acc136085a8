defmodule Hello.Release do
  @moduledoc """
  What `edeliver migrate` runs (`[environments.X] migrate = "Hello.Release.migrate"`), through
  the release's `bin/hello eval`, as a real app's would run its Ecto migrations: each run is
  recorded as a line of the node's shared/hello.migrations.
  """

  @doc "Records one run in shared/hello.migrations and says so."
  @spec migrate() :: :ok
  def migrate do
    root = System.get_env("RELEASE_ROOT", File.cwd!())
    file = Path.expand("../../shared/hello.migrations", root)
    File.mkdir_p!(Path.dirname(file))
    File.write!(file, "#{Hello.version()}\n", [:append])
    IO.puts("migrated #{Hello.version()}")
  end
end
