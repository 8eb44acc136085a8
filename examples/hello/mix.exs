defmodule Hello.MixProject do
  use Mix.Project

  # Build variants are chosen by environment variables so that tests can build
  # several releases from the same, unedited sources (see README.md).
  @version System.get_env("HELLO_VERSION", "0.1.0")
  @variant System.get_env("HELLO_VARIANT", "good")

  unless @variant in ["good", "broken", "v2"] do
    Mix.raise("HELLO_VARIANT must be \"good\", \"broken\" or \"v2\", got: #{inspect(@variant)}")
  end

  def project do
    [
      app: :hello,
      version: @version,
      hello_variant: @variant,
      elixir: "~> 1.14",
      start_permanent: Mix.env() == :prod,
      deps: [],
      releases: releases(),
      aliases: aliases()
    ]
  end

  def application do
    [
      extra_applications: [:logger],
      mod: {Hello.Application, []},
      env: [variant: String.to_atom(@variant)]
    ]
  end

  # The variables change neither the sources nor mix.exs, so an incremental build
  # in a reused build dir would keep the previous `.app` (old vsn and variant).
  defp aliases, do: [release: ["compile --force", "release"]]

  defp releases do
    [
      hello: [
        include_erts: true,
        # Fixed, so that every build (and a hot upgrade between builds) shares it.
        cookie: "hello-example-cookie-not-secret"
      ]
    ]
  end
end
