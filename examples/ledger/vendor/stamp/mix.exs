defmodule Stamp.MixProject do
  use Mix.Project

  def project, do: [app: :stamp, version: "0.2.0", elixir: "~> 1.14", deps: []]
  def application, do: []
end
