defmodule Hello.Counter do
  @moduledoc "Counts bumps; its state (an integer) survives hot upgrades."
  use GenServer

  # Compile-time build facts: they make each build's object code differ, so a
  # relup between builds updates this GenServer through `code_change/3`.
  @version Mix.Project.config()[:version]
  @variant Mix.Project.config()[:hello_variant]

  def start_link(initial), do: GenServer.start_link(__MODULE__, initial, name: __MODULE__)

  def child_spec(_arg), do: %{id: __MODULE__, start: {__MODULE__, :start_link, [0]}}

  @doc "Adds one and returns the new count."
  @spec bump() :: non_neg_integer()
  def bump, do: GenServer.call(__MODULE__, :bump)

  @doc "The current count."
  @spec value() :: non_neg_integer()
  def value, do: GenServer.call(__MODULE__, :value)

  @doc "The count and the version of the code the process is running."
  @spec info() :: %{count: non_neg_integer(), code_version: String.t()}
  def info, do: GenServer.call(__MODULE__, :info)

  @impl true
  def init(count) when is_integer(count), do: {:ok, count}

  @impl true
  def handle_call(:bump, _from, count), do: {:reply, count + 1, count + 1}
  def handle_call(:value, _from, count), do: {:reply, count, count}

  def handle_call(:info, _from, count),
    do: {:reply, %{count: count, code_version: @version}, count}

  if @variant == "broken" do
    # A hot upgrade into the broken build fails too (after the point of no return,
    # so the node restarts in place into its permanent release).
    @impl true
    def code_change(_old_vsn, _count, _extra), do: raise("broken_on_purpose: code_change refused")
  else
    @impl true
    def code_change(_old_vsn, count, _extra) when is_integer(count), do: {:ok, count}
  end
end
