# Mix tasks every edeliver build loads with `elixir -r` before `mix` runs (build_scripts.py).
# They change nothing on disk but stale build outputs: mix.exs stays as it is.

defmodule Mix.Tasks.Edeliver.Version do
  @moduledoc false
  # Appends EDELIVER_VERSION_SUFFIX (when set) to the project's version as semver build
  # metadata, in memory, for the compile and the release alike.
  use Mix.Task

  def run(_args) do
    case System.get_env("EDELIVER_VERSION_SUFFIX", "") do
      "" ->
        :ok

      suffix ->
        config = Mix.Project.config()
        releases = for {name, options} <- config[:releases] || [], do: {name, suffixed(options, suffix)}
        Mix.ProjectStack.merge_config(version: add(config[:version], suffix), releases: releases)
    end
  end

  # A release's own `version:` (an umbrella's) gets the suffix too; an umbrella's children get
  # theirs after they compile (Edeliver.Children).
  defp suffixed(options, suffix) do
    if options[:version], do: Keyword.update!(options, :version, &add(&1, suffix)), else: options
  end

  @doc false
  def add(nil, _suffix), do: nil

  def add(version, suffix) do
    separator = if String.contains?(version, "+"), do: ".", else: "+"
    version <> separator <> suffix
  end
end

defmodule Mix.Tasks.Edeliver.Children do
  @moduledoc false
  # An umbrella's children compile at the versions of their own mix.exs, out of the reach of
  # Edeliver.Version's suffix. Once compiled, each child's ebin/<app>.app is written again by
  # compile.app at its version plus the suffix, so the release's lib/<child>-<v> and the .app
  # inside carry the build's version. `mix release` keeps that .app: mix.exs is older than it and
  # its modules are the same. Edeliver.Fresh removes it at the next build (its vsn is not the
  # mix.exs version), so every build writes its own.
  use Mix.Task

  def run(_args) do
    suffix = System.get_env("EDELIVER_VERSION_SUFFIX", "")

    case Mix.Project.apps_paths() do
      apps when is_map(apps) and suffix != "" ->
        for {app, path} <- apps, do: Mix.Project.in_project(app, path, &suffix_app(&1, suffix))

      _ ->
        :ok
    end

    :ok
  end

  defp suffix_app(_module, suffix) do
    version = Mix.Tasks.Edeliver.Version.add(Mix.Project.config()[:version], suffix)
    Mix.ProjectStack.merge_config(version: version)
    Mix.Task.rerun("compile.app", ["--force"])
  end
end

defmodule Mix.Tasks.Edeliver.Release do
  @moduledoc false
  # Refuses, before any dependency is fetched, a release name mix.exs does not define, and a
  # build without a name when mix.exs defines several (which one would be a guess).
  use Mix.Task

  def run(args) do
    known = Keyword.keys(Mix.Project.config()[:releases] || [])
    listed = if known == [], do: "none", else: Enum.map_join(known, ", ", &Atom.to_string/1)

    case args do
      [name] ->
        unless name in Enum.map(known, &Atom.to_string/1) do
          Mix.raise("edeliver: build.release: unknown release #{name}; mix.exs defines: #{listed}")
        end

      [] when length(known) > 1 ->
        Mix.raise("edeliver: build.release: mix.exs defines several releases (#{listed}); name one")

      [] ->
        :ok
    end
  end
end

defmodule Mix.Tasks.Edeliver.Fresh do
  @moduledoc false
  # Elixir 1.14 keeps an ebin/<app>.app whose vsn an earlier build wrote when only the
  # environment (System.get_env in mix.exs) or auto_version changed the version: removing the
  # project's own stale .app files makes `compile.app` write them anew with the new vsn.
  use Mix.Task

  def run(_args) do
    case Mix.Project.apps_paths() do
      nil ->
        forget_stale_app()

      apps ->
        for {app, path} <- apps do
          Mix.Project.in_project(app, path, fn _ -> forget_stale_app() end)
        end
    end

    :ok
  end

  defp forget_stale_app do
    config = Mix.Project.config()
    file = Path.join(Mix.Project.compile_path(config), "#{config[:app]}.app")

    with {:ok, [{:application, _, properties}]} <- :file.consult(file),
         true <- to_string(properties[:vsn]) != config[:version] do
      File.rm!(file)
    end
  end
end
