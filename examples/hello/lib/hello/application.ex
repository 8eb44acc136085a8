defmodule Hello.Application do
  @moduledoc false
  use Application

  @impl true
  def start(_type, _args) do
    cond do
      Application.fetch_env!(:hello, :variant) == :broken -> {:error, :broken_on_purpose}
      refused_on_this_node?() -> {:error, {:refused_on_this_node, Hello.version()}}
      true -> start_tree()
    end
  end

  # Tests make one chosen node refuse to boot one chosen version: the node's
  # <deploy path>/shared/hello.refuse holds that version.
  defp refused_on_this_node?, do: Hello.Shared.read("hello.refuse") == Hello.version()

  @impl true
  def prep_stop(state) do
    Hello.Status.delete()
    state
  end

  defp start_tree do
    children = [Hello.Counter]

    with {:ok, pid} <-
           Supervisor.start_link(children, strategy: :one_for_one, name: Hello.Supervisor) do
      Hello.Status.write()
      {:ok, pid}
    end
  end
end
