# Generates the appups and the relup of a hot upgrade OLD -> NEW (see docs/hot-upgrades.md).
#
# Run by edeliver.adapters.build.upgrade_build with the NEW release's own `bin/<name> eval`, so the
# OTP that makes the relup is the one the release ships. Input from the environment:
#   EDELIVER_OLD_ROOT, EDELIVER_NEW_ROOT   pristine release roots (unpacked store copies)
#   EDELIVER_OLD_VSN, EDELIVER_NEW_VSN     release versions
#   EDELIVER_REL_NAME                      the release name (releases/<vsn>/<name>.rel)
#   EDELIVER_TOOLCHAIN_APPS                comma-separated apps of OTP and Elixir themselves
# Output: one line per finding, `edeliver:<kind>:<text>`; the last is `edeliver:ok` or
# `edeliver:refused:<reason>`. Nothing here touches OLD_ROOT; appups and relup go to NEW_ROOT.
defmodule Edeliver.Relup do
  @moduledoc false

  def main do
    env = &System.fetch_env!/1
    old = %{root: env.("EDELIVER_OLD_ROOT"), vsn: env.("EDELIVER_OLD_VSN")}
    new = %{root: env.("EDELIVER_NEW_ROOT"), vsn: env.("EDELIVER_NEW_VSN")}
    name = env.("EDELIVER_REL_NAME")
    toolchain = env.("EDELIVER_TOOLCHAIN_APPS") |> String.split(",") |> MapSet.new()

    case run(name, old, new, toolchain) do
      :ok -> say(:ok, "")
      {:refused, why} -> say(:refused, why)
    end
  end

  defp run(name, old, new, toolchain) do
    {old_erts, old_apps} = read_rel(old, name)
    {new_erts, new_apps} = read_rel(new, name)

    with :ok <- same_erts(old_erts, new_erts),
         :ok <- toolchain_unchanged(old_apps, new_apps, toolchain),
         :ok <- bumped_when_changed(old, new, old_apps, new_apps) do
      consolidation = consolidation_steps(old, new)

      for {app, new_vsn} <- new_apps, old_apps[app] not in [nil, new_vsn] do
        ensure_appup(app, old, new, old_apps[app], new_vsn, consolidation, app == main_app(name))
      end

      make_relup(name, old, new)
    end
  end

  defp say(kind, text), do: IO.puts("edeliver:#{kind}:#{String.replace(text, "\n", " ")}")

  defp read_rel(%{root: root, vsn: vsn}, name) do
    path = Path.join([root, "releases", vsn, name <> ".rel"])
    {:ok, [{:release, _, {:erts, erts}, apps}]} = :file.consult(String.to_charlist(path))
    {to_string(erts), Map.new(apps, fn app -> {elem(app, 0), to_string(elem(app, 1))} end)}
  end

  defp main_app(name), do: String.to_atom(name)

  defp same_erts(erts, erts), do: :ok

  defp same_erts(old, new),
    do: {:refused, "ERTS changes (#{old} -> #{new}): an OTP upgrade needs a restart"}

  defp toolchain_unchanged(old_apps, new_apps, toolchain) do
    changed =
      for {app, vsn} <- new_apps,
          Atom.to_string(app) in toolchain,
          Map.has_key?(old_apps, app) and old_apps[app] != vsn,
          do: "#{app} #{old_apps[app]} -> #{vsn}"

    if changed == [],
      do: :ok,
      else: {:refused, "Elixir/OTP applications change (#{Enum.join(changed, ", ")})"}
  end

  # release_handler never reloads an app whose vsn is unchanged (hot-upgrades.md P12).
  defp bumped_when_changed(old, new, old_apps, new_apps) do
    stale =
      for {app, vsn} <- new_apps,
          old_apps[app] == vsn,
          modules_differ?(ebin(old, app, vsn), ebin(new, app, vsn)),
          do: "#{app} #{vsn}"

    if stale == [],
      do: :ok,
      else: {:refused, "code changed without a version bump in #{Enum.join(stale, ", ")}"}
  end

  defp modules_differ?(old_ebin, new_ebin) do
    {added, deleted, changed} = diff(old_ebin, new_ebin)
    added != [] or deleted != [] or changed != []
  end

  defp ebin(%{root: root}, app, vsn), do: Path.join([root, "lib", "#{app}-#{vsn}", "ebin"])

  # {added, deleted, changed} modules; "changed" compares code chunks only (P13: stripped beams).
  defp diff(old_dir, new_dir) do
    old = beams(old_dir)
    new = beams(new_dir)
    added = Map.keys(new) -- Map.keys(old)
    deleted = Map.keys(old) -- Map.keys(new)

    changed =
      for {m, path} <- new, Map.has_key?(old, m), md5(path) != md5(old[m]), do: m

    {Enum.sort(added), Enum.sort(deleted), Enum.sort(changed)}
  end

  defp beams(dir) do
    for path <- Path.wildcard(Path.join(dir, "*.beam")), into: %{} do
      {path |> Path.basename(".beam") |> String.to_atom(), path}
    end
  end

  defp md5(path) do
    {:ok, {_, digest}} = :beam_lib.md5(String.to_charlist(path))
    digest
  end

  # A hand-written appup covering OLD (copied into NEW's ebin beforehand) wins.
  defp ensure_appup(app, old, new, old_vsn, new_vsn, consolidation, main?) do
    file = Path.join(ebin(new, app, new_vsn), "#{app}.appup")

    if covers?(file, old_vsn) do
      say(:appup, "#{app}: kept the one in the project")
    else
      {added, deleted, changed} = diff(ebin(old, app, old_vsn), ebin(new, app, new_vsn))
      instructions = Enum.map(changed, &instruction(&1, ebin(new, app, new_vsn)))
      {up_extra, down_extra} = if main?, do: consolidation, else: {[], []}
      up = Enum.map(added, &{:add_module, &1}) ++ instructions ++ delete(deleted) ++ up_extra
      down = down_extra ++ Enum.map(deleted, &{:add_module, &1}) ++ instructions ++ delete(added)
      term = {to_charlist(new_vsn), [{to_charlist(old_vsn), up}], [{to_charlist(old_vsn), down}]}
      File.write!(file, :io_lib.format(~c"~tp.~n", [term]))
      say(:appup, "#{app}: generated (#{length(up)} up / #{length(down)} down instructions)")
    end
  end

  defp delete(modules), do: Enum.map(modules, &{:delete_module, &1})

  defp covers?(file, old_vsn) do
    case :file.consult(String.to_charlist(file)) do
      {:ok, [{_, ups, _downs}]} -> Enum.any?(ups, fn {v, _} -> to_string(v) == old_vsn end)
      _ -> false
    end
  end

  defp instruction(module, ebin) do
    path = String.to_charlist(Path.join(ebin, "#{module}.beam"))
    {:ok, {_, [attributes: attrs, exports: exports]}} = :beam_lib.chunks(path, [:attributes, :exports])
    behaviours = Keyword.get_values(attrs, :behaviour) ++ Keyword.get_values(attrs, :behavior)

    cond do
      :supervisor in List.flatten(behaviours) -> {:update, module, :supervisor}
      Enum.any?(exports, &(&1 in [code_change: 3, code_change: 4, system_code_change: 4])) ->
        {:update, module, {:advanced, []}}
      true -> {:load_module, module}
    end
  end

  # Protocol consolidation is invisible to release_handler (P9): switch the consolidated dir
  # on the node's code path and reload the protocols that differ, both ways.
  defp consolidation_steps(old, new) do
    dir = &Path.join([&1.root, "releases", &1.vsn, "consolidated"])
    {added, deleted, changed} = diff(dir.(old), dir.(new))

    if added ++ deleted ++ changed == [] do
      {[], []}
    else
      say(:consolidated, "protocols reloaded: #{inspect(added ++ changed ++ deleted)}")
      up = switch_source(old.vsn, new.vsn, added ++ changed, deleted)
      down = switch_source(new.vsn, old.vsn, deleted ++ changed, added)
      {[{:apply, {Code, :eval_string, [up]}}], [{:apply, {Code, :eval_string, [down]}}]}
    end
  end

  # Elixir source run on the node: paths come from :code.root_dir() there, not from here.
  defp switch_source(from, to, load, drop) do
    """
    dir = fn v -> String.to_charlist(Path.join([to_string(:code.root_dir()), "releases", v, "consolidated"])) end
    :code.del_path(dir.(#{inspect(from)}))
    true = :code.add_patha(dir.(#{inspect(to)}))
    for m <- #{inspect(load)} do
      :code.purge(m)
      {:module, ^m} = :code.load_abs(Path.join(to_string(dir.(#{inspect(to)})), Atom.to_string(m)) |> String.to_charlist())
    end
    for m <- #{inspect(drop)}, do: (:code.purge(m); :code.delete(m))
    :ok
    """
  end

  defp make_relup(name, old, new) do
    rel = &String.to_charlist(Path.join([&1.root, "releases", &1.vsn, name]))
    ebins = for r <- [old, new], d <- Path.wildcard(Path.join(r.root, "lib/*/ebin")), do: to_charlist(d)
    outdir = String.to_charlist(Path.join([new.root, "releases", new.vsn]))
    options = [{:path, ebins}, {:outdir, outdir}, :silent]
    {:ok, _} = Application.ensure_all_started(:sasl)

    case :systools.make_relup(rel.(new), [rel.(old)], [rel.(old)], options) do
      {:ok, relup, _module, warnings} ->
        for w <- warnings, do: say(:warning, inspect(w))
        File.write!(Path.join(to_string(outdir), "relup"), :io_lib.format(~c"%% coding: utf-8~n~tp.~n", [relup]))
        :ok

      {:error, module, reason} ->
        {:refused, "make_relup failed: " <> to_string(module.format_error(reason))}
    end
  end
end

Edeliver.Relup.main()
