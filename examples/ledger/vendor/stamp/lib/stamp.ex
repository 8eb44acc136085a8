defmodule Stamp do
  @moduledoc "A path dependency: marks a name."

  def mark(name), do: "stamped:" <> name
end
