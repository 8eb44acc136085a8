defmodule Hello.Counter do
  @moduledoc """
  Counts bumps; its state survives hot upgrades. v1 builds keep an integer, v2 builds a map
  `%{count: n, schema: 2}`; `code_change/3` converts both ways.
  """
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

  @doc "The count, the version of the code the process runs and (v2) the state's schema."
  @spec info() :: map()
  def info, do: GenServer.call(__MODULE__, :info)

  @impl true
  def init(count) when is_integer(count), do: {:ok, initial(count)}

  if @variant == "v2" do
    defp initial(count), do: %{count: count, schema: 2}

    @impl true
    def handle_call(:bump, _from, %{count: n} = s), do: {:reply, n + 1, %{s | count: n + 1}}
    def handle_call(:value, _from, %{count: n} = s), do: {:reply, n, s}

    def handle_call(:info, _from, %{count: n} = s),
      do: {:reply, %{count: n, code_version: @version, schema: 2}, s}

    # OldVsn is the module's -vsn (an md5 integer), not the app version (hot-upgrades.md P8):
    # match on the state's shape. A node whose shared/hello.code_change_raises exists fails it.
    @impl true
    def code_change({:down, _vsn}, %{count: n}, _extra), do: {:ok, n}

    def code_change(_old_vsn, count, _extra) when is_integer(count) do
      if Hello.Shared.read("hello.code_change_raises"),
        do: raise("code_change refused on purpose")

      {:ok, %{count: count, schema: 2}}
    end
  else
    defp initial(count), do: count

    @impl true
    def handle_call(:bump, _from, count), do: {:reply, count + 1, count + 1}
    def handle_call(:value, _from, count), do: {:reply, count, count}

    def handle_call(:info, _from, count),
      do: {:reply, %{count: count, code_version: @version}, count}

    if @variant == "broken" do
      # A hot upgrade into the broken build fails too (after the point of no return,
      # so the node restarts in place into its permanent release).
      @impl true
      def code_change(_old_vsn, _count, _extra),
        do: raise("broken_on_purpose: code_change refused")
    else
      # A downgrade from v2 runs v2's code_change (hot-upgrades.md §2); an integer stays one.
      @impl true
      def code_change(_old_vsn, count, _extra) when is_integer(count), do: {:ok, count}
    end
  end
end
