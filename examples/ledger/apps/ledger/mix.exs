defmodule Ledger.MixProject do
  use Mix.Project

  def project do
    [
      app: :ledger,
      version: System.get_env("LEDGER_VERSION", "0.1.0"),
      build_path: "../../_build",
      config_path: "../../config/config.exs",
      deps_path: "../../deps",
      lockfile: "../../mix.lock",
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      deps: deps()
    ]
  end

  def application do
    [extra_applications: [:logger, :crypto], mod: {Ledger.Application, []}]
  end

  # No Hex here: a git dependency (TALLY_GIT_URL, a bare repository the tests create from
  # examples/deps/tally) and a path dependency inside the project (so `git archive` has it).
  defp deps do
    [
      {:tally, git: System.get_env("TALLY_GIT_URL", "https://git.invalid/tally.git")},
      {:stamp, path: "../../vendor/stamp"}
    ]
  end
end
