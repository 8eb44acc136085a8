defmodule Tally do
  @moduledoc "A git dependency: adds numbers."

  def sum(numbers), do: Enum.sum(numbers)
end
