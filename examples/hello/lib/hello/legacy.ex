if Mix.Project.config()[:hello_variant] != "v2" do
  defmodule Hello.Legacy do
    @moduledoc "Only in v1 builds: a hot upgrade to v2 deletes it, a downgrade brings it back."

    @spec hello() :: String.t()
    def hello, do: "legacy hello"
  end
end
