defmodule Hello do
  @moduledoc "A tiny app for Edeliver's end-to-end tests and demo."

  # Baked in at compile time so that each version has different object code
  # (a hot upgrade then really loads a new `Hello`).
  @version Mix.Project.config()[:version]

  @doc "The version this code was built as, e.g. \"0.1.0\"."
  @spec version() :: String.t()
  def version, do: @version
end
