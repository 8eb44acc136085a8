# Edeliver's task protocol for Elixir modules under .deliver/tasks/ (docs/tasks.md), akin to a
# Plug: `run/1` gets a context and returns it; `assign/3` and `cmd/2` return it too.
#
#     defmodule MyApp.Deploy.Migrate do
#       use Edeliver.Task, stage: :post_extract_release_archive, where: :once
#       def run(ctx), do: ctx |> cmd("echo migrating") |> assign(:migrated, MyApp.Release.migrate())
#       def cleanup(ctx), do: ctx
#     end
#
# Edeliver reads the `use` options on the deployer (they must be literals), and prepends this
# file to the program it runs where the tasks run: no Hex package is needed.

defmodule Edeliver.Task.Context do
  @moduledoc "What a task gets and returns: `assigns` flow to the next tasks of the node."
  defstruct app: nil,
            release: nil,
            environment: nil,
            stage: nil,
            node: nil,
            first_deploy: false,
            assigns: %{},
            env: %{},
            dir: nil
end

defmodule Edeliver.Task.CommandFailed do
  defexception [:message]
end

defmodule Edeliver.Task do
  @moduledoc "The behaviour of a task module, and the helpers it imports."
  alias Edeliver.Task.Context

  @callback run(%Context{}) :: %Context{}
  @callback cleanup(%Context{}) :: %Context{}
  @optional_callbacks cleanup: 1

  defmacro __using__(options) do
    quote do
      @behaviour Edeliver.Task
      import Edeliver.Task, only: [assign: 3, cmd: 2, cmd: 3]
      def __edeliver_task__, do: unquote(options)
    end
  end

  @doc "Adds `value` under `key` to the context's assigns, for the later tasks of the node."
  def assign(%Context{} = ctx, key, value) when is_atom(key) do
    %{ctx | assigns: Map.put(ctx.assigns, key, value)}
  end

  @doc """
  Runs a `sh` command where the task runs (from the deploy path on a node, from the project
  here) with the context's `env`; its output joins the task's. A non-zero exit raises unless
  `check: false`; `into: key` assigns the output (trimmed).
  """
  def cmd(%Context{} = ctx, command, options \\ []) when is_binary(command) do
    {said, status} =
      System.cmd("sh", ["-c", command],
        cd: ctx.dir || File.cwd!(),
        env: Enum.to_list(ctx.env),
        stderr_to_stdout: true
      )

    IO.write(said)

    if status != 0 and Keyword.get(options, :check, true) do
      raise Edeliver.Task.CommandFailed, "`#{command}` exited #{status}"
    end

    case Keyword.fetch(options, :into) do
      {:ok, key} -> assign(ctx, key, String.trim(said))
      :error -> ctx
    end
  end
end

defmodule Edeliver.Task.JSON do
  @moduledoc false
  # A small JSON encoder: the release being deployed need not carry a JSON library. A term
  # JSON cannot hold throws {:not_json, term}.

  def encode(nil), do: "null"
  def encode(true), do: "true"
  def encode(false), do: "false"
  def encode(atom) when is_atom(atom), do: encode(Atom.to_string(atom))
  def encode(number) when is_integer(number), do: Integer.to_string(number)
  def encode(number) when is_float(number), do: Float.to_string(number)

  def encode(text) when is_binary(text),
    do: if(String.valid?(text), do: quoted(text), else: throw({:not_json, text}))

  def encode(list) when is_list(list), do: "[" <> Enum.map_join(list, ",", &encode/1) <> "]"

  def encode(map) when is_map(map) and not is_struct(map) do
    "{" <> Enum.map_join(map, ",", fn {k, v} -> encode(key(k)) <> ":" <> encode(v) end) <> "}"
  end

  def encode(other), do: throw({:not_json, other})

  defp key(k) when is_atom(k) or is_binary(k), do: to_string(k)
  defp key(k), do: throw({:not_json, k})

  defp quoted(text) do
    escaped =
      for <<c::utf8 <- text>>, into: "" do
        case c do
          ?" -> "\\\""
          ?\\ -> "\\\\"
          c when c < 0x20 -> "\\u" <> String.pad_leading(Integer.to_string(c, 16), 4, "0")
          c -> <<c::utf8>>
        end
      end

    "\"" <> escaped <> "\""
  end
end

defmodule Edeliver.Task.Runner do
  @moduledoc false
  # Runs the tasks of one stage of one node in this VM, one after the other: each in a process
  # of its own with its output captured, under the step's time limit. One result line per task
  # reached (a critical failure ends the batch); the deployer reads them back.
  alias Edeliver.Task.Context

  @marker "EDELIVER-TASK-RESULT "

  def main(%{files: files, tasks: tasks, phase: phase, context: context, timeout: timeout}) do
    Process.flag(:trap_exit, true)
    Code.compiler_options(ignore_module_conflict: true)

    case compile(files) do
      {:ok, modules} ->
        run_all(tasks, phase, context(context), timeout)
        Enum.each(modules, &forget/1)

      {:error, message} ->
        report(%{"compile_error" => message})
    end
  end

  # Assigns and the node's settings have atom keys in Elixir (`ctx.assigns.migrated`).
  defp context(fields) do
    node = if fields[:node], do: atom_keys(fields[:node])

    struct(
      Context,
      %{fields | assigns: atom_keys(fields[:assigns] || %{})} |> Map.put(:node, node)
    )
  end

  defp atom_keys(map), do: Map.new(map, fn {key, value} -> {String.to_atom(key), value} end)

  defp compile(files) do
    modules = Enum.flat_map(files, fn {file, source} -> Code.compile_string(source, file) end)
    {:ok, for({module, _} <- modules, do: module)}
  rescue
    error -> {:error, Exception.message(error)}
  end

  # A running VM keeps no task module once its tasks ran: the next deployment brings its own.
  defp forget(module) do
    :code.purge(module)
    :code.delete(module)
  end

  defp run_all([], _phase, _ctx, _timeout), do: :ok

  defp run_all([{module, name, critical} | rest], phase, ctx, timeout) do
    ctx = %{ctx | env: Map.put(ctx.env, "TASK", name)}
    {ok, said, ctx} = run_one(module, phase, ctx, timeout)
    report(%{"task" => name, "ok" => ok, "output" => said, "assigns" => json_assigns(ctx)})
    if ok or not critical, do: run_all(rest, phase, ctx, timeout)
  end

  defp run_one(module, phase, ctx, timeout) do
    {:ok, io} = StringIO.open("")
    job = Task.async(fn -> Process.group_leader(self(), io) && call(module, phase, ctx) end)

    outcome =
      case Task.yield(job, timeout) || Task.shutdown(job, :brutal_kill) do
        {:ok, result} -> result
        {:exit, reason} -> {:error, "exited: " <> inspect(reason)}
        nil -> {:error, "timed out after #{div(timeout, 1000)}s and was stopped"}
      end

    {:ok, {_, said}} = StringIO.close(io)
    said = printable(said)

    case outcome do
      {:ok, new_ctx} -> {true, said, new_ctx}
      {:error, why} -> {false, Enum.join(Enum.reject([said, why], &(&1 == "")), "\n"), ctx}
    end
  end

  defp call(module, phase, ctx) do
    case apply(module, phase, [ctx]) do
      %Context{} = new_ctx ->
        check_assigns(new_ctx)

      other ->
        {:error, "#{inspect(module)}.#{phase}/1 returned #{inspect(other)}, not the context"}
    end
  rescue
    error -> {:error, failure(:error, error, __STACKTRACE__)}
  catch
    kind, reason -> {:error, failure(kind, reason, __STACKTRACE__)}
  end

  # The task's own frames, then the error: the last lines of a failure are what reports show.
  defp failure(kind, reason, stacktrace) do
    own = Enum.take_while(stacktrace, fn {module, _, _, _} -> module != __MODULE__ end)
    frames = Enum.map(own, &("    " <> Exception.format_stacktrace_entry(&1)))
    Enum.join(frames ++ [Exception.format_banner(kind, reason, stacktrace)], "\n")
  end

  defp check_assigns(ctx) do
    json_assigns(ctx)
    {:ok, ctx}
  catch
    {:not_json, key, value} ->
      {:error,
       "assign #{inspect(key)} is not JSON-safe (#{inspect(value)}): later tasks get JSON"}
  end

  defp json_assigns(ctx) do
    Map.new(ctx.assigns, fn {key, value} ->
      {key, try_json(value, key)}
    end)
  end

  defp try_json(value, key) do
    json(value)
    value
  catch
    {:not_json, other} -> throw({:not_json, key, other})
  end

  defp report(result), do: IO.puts(@marker <> json(result))

  defp json(term), do: Edeliver.Task.JSON.encode(term)

  defp printable(text) do
    if String.valid?(text), do: text, else: :unicode.characters_to_binary(text, :latin1)
  end
end

