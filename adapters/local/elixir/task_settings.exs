# Reads the settings of Elixir task modules without running them (docs/tasks.md):
# `elixir task_settings.exs edeliver_task.ex FILE...` prints one JSON line per module that
# says `use Edeliver.Task, ...`, or one line with the first problem, naming its file and line.
# Options must be literals: the deployer knows them before anything runs. Each file is also
# compiled here (without the app), to refuse what cannot compile anywhere before any deploy.

[protocol | files] = System.argv()
Code.require_file(protocol)

defmodule Edeliver.TaskSettings do
  @known [:stage, :where, :critical, :optional, :environments, :requires, :initial]

  def read(file) do
    source = File.read!(file)

    case Code.string_to_quoted(source, file: file) do
      {:ok, ast} -> modules(ast, [], file)
      {:error, {meta, message, token}} -> fail(file, line(meta), "#{format(message)}#{token}")
    end
  end

  defp format({prefix, suffix}), do: "#{prefix}#{suffix}"
  defp format(message), do: to_string(message)

  defp line(meta) when is_list(meta), do: Keyword.get(meta, :line, "?")
  defp line(number), do: number

  # Every `defmodule`, nested ones under their full names.
  defp modules({:defmodule, meta, [name, [do: body]]}, outer, file) do
    full = outer ++ [alias_name(name)]

    own =
      for(
        {:use, use_meta, [target | options]} <- items(body),
        task?(target),
        do: {use_meta, options}
      )

    mine =
      case own do
        [] -> []
        [{use_meta, options} | _] -> [settings(file, meta, use_meta, full, options, body)]
      end

    mine ++ Enum.flat_map(items(body), &modules(&1, full, file))
  end

  defp modules({:__block__, _, items}, outer, file),
    do: Enum.flat_map(items, &modules(&1, outer, file))

  defp modules(_other, _outer, _file), do: []

  defp items({:__block__, _, items}), do: items
  defp items(item), do: [item]

  defp alias_name({:__aliases__, _, parts}), do: Enum.map_join(parts, ".", &to_string/1)
  defp alias_name(atom) when is_atom(atom), do: inspect(atom)

  defp task?({:__aliases__, _, [:Edeliver, :Task]}), do: true
  defp task?(_), do: false

  defp settings(file, meta, use_meta, full, options, body) do
    options = List.first(options, [])
    at = line(use_meta)

    unless is_list(options) and Enum.all?(options, &match?({key, _} when is_atom(key), &1)) do
      fail(
        file,
        at,
        "use Edeliver.Task: expected options like `stage: :post_start_deployed_release`"
      )
    end

    for {key, value} <- options do
      unless key in @known do
        fail(
          file,
          at,
          "use Edeliver.Task: unknown option #{key}:; known: #{Enum.join(@known, ", ")}"
        )
      end

      unless Macro.quoted_literal?(value) do
        fail(
          file,
          at,
          "use Edeliver.Task: option #{key}: is not a literal (#{Macro.to_string(value)}); " <>
            "settings are read before anything runs"
        )
      end
    end

    %{
      "module" => Enum.join(full, "."),
      "line" => line(meta),
      "options" => Map.new(options, fn {key, value} -> {key, plain(value)} end),
      "cleanup" => Enum.any?(items(body), &cleanup?/1)
    }
  end

  defp plain({:__block__, _, [value]}), do: plain(value)
  defp plain(list) when is_list(list), do: Enum.map(list, &plain/1)
  defp plain(value), do: value

  defp cleanup?({:def, _, [{:when, _, [{:cleanup, _, [_]} | _]} | _]}), do: true
  defp cleanup?({:def, _, [{:cleanup, _, [_]} | _]}), do: true
  defp cleanup?(_), do: false

  defp fail(file, line, message), do: throw({:problem, "#{file}:#{line}: #{message}"})
end

defmodule Edeliver.TaskCompileCheck do
  # A task module that cannot compile anywhere (an undefined function or variable) is refused
  # here, before anything is deployed. What only the app can settle (its modules, structs,
  # macros) or compile-time code failing on this machine is left to the node to decide.
  @only_the_app ["is not loaded and could not be found", "cannot expand struct"]

  def check(file) do
    Code.compile_string(File.read!(file), file)
    :ok
  rescue
    error in CompileError ->
      message = Exception.message(error)

      unless Enum.any?(@only_the_app, &String.contains?(message, &1)),
        do: throw({:problem, message})

    _other ->
      :ok
  end
end

Code.compiler_options(ignore_module_conflict: true)

try do
  for file <- files do
    modules = Edeliver.TaskSettings.read(file)
    if modules != [], do: Edeliver.TaskCompileCheck.check(file)
    for module <- modules, do: IO.puts(Edeliver.Task.JSON.encode(Map.put(module, "file", file)))
  end
catch
  {:problem, message} ->
    IO.puts(Edeliver.Task.JSON.encode(%{"error" => message}))
end

