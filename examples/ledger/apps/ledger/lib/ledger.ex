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
end
