defmodule Tally.MixProject do
  use Mix.Project

  def project, do: [app: :tally, version: "0.3.0", elixir: "~> 1.14", deps: []]
  def application, do: []
end
