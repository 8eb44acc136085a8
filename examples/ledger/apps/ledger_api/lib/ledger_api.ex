defmodule LedgerApi do
  @moduledoc "The umbrella's second app: the ledger's report as one line."

  def line, do: inspect(Ledger.report())
end
