if Mix.Project.config()[:hello_variant] == "v2" do
  defmodule Hello.Greeter do
    @moduledoc "Only in v2 builds: a module added by the upgrade, with a protocol implementation."
    defstruct name: "world"

    @type t :: %__MODULE__{name: String.t()}
  end

  defimpl String.Chars, for: Hello.Greeter do
    # The greeting comes from config/runtime.exs, so it shows the runtime value survived.
    def to_string(%Hello.Greeter{name: name}),
      do: "#{Application.get_env(:hello, :greeting, "hello")}, #{name}"
  end
end
