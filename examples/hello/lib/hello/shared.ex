defmodule Hello.Shared do
  @moduledoc """
  Marker files tests put on one node to change its behaviour: `<deploy path>/shared/<name>`.
  RELEASE_ROOT is `<deploy path>/releases/<version>`, so shared/ is two levels up.
  """

  @doc "The trimmed content of the node's shared/<name>, or nil when there is none."
  @spec read(String.t()) :: String.t() | nil
  def read(name) do
    root = System.get_env("RELEASE_ROOT", File.cwd!())

    case File.read(Path.expand(Path.join("../../shared", name), root)) do
      {:ok, text} -> String.trim(text)
      {:error, _} -> nil
    end
  end
end
