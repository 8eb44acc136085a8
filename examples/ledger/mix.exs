defmodule LedgerUmbrella.MixProject do
  use Mix.Project

  # The version comes from the environment, so tests build several versions from the same,
  # unedited sources (the case Elixir 1.14 does not recompile by itself).
  @version System.get_env("LEDGER_VERSION", "0.1.0")

  def project do
    [
      apps_path: "apps",
      version: @version,
      start_permanent: Mix.env() == :prod,
      deps: [],
      releases: releases()
    ]
  end

  # Two releases, so a build must say which one (`[build] release`).
  defp releases do
    [
      ledger: [
        version: @version,
        applications: [ledger: :permanent, ledger_api: :permanent],
        include_erts: true,
        cookie: "ledger-example-cookie-not-secret"
      ],
      ledger_lite: [
        version: @version,
        applications: [ledger: :permanent],
        include_erts: true,
        cookie: "ledger-example-cookie-not-secret"
      ]
    ]
  end
end
