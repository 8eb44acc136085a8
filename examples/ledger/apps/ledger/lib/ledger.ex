defmodule Ledger do
  @moduledoc "What a built release says of itself: its version, its deps at work, its settings."

  def report do
    Application.load(:ledger)

    %{
      version: to_string(Application.spec(:ledger, :vsn)),
      total: Tally.sum([1, 2, 3]),
      stamp: Stamp.mark("ledger"),
      greeting: Application.get_env(:ledger, :greeting)
    }
  end

  @doc "What the running node says of its settings: secrets only as their sha256 digests."
  def settings do
    %{
      node: node(),
      greeting: Application.get_env(:ledger, :greeting),
      secret_sha256: digest(Application.get_env(:ledger, :secret, "")),
      api_key_sha256: digest(Application.get_env(:ledger, :api_key, ""))
    }
  end

  defp digest(value), do: :crypto.hash(:sha256, value) |> Base.encode16(case: :lower)
end
