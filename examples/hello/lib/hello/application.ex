defmodule Hello.Application do
  @moduledoc false
  use Application

  @impl true
  def start(_type, _args) do
    case Application.fetch_env!(:hello, :variant) do
      :broken -> {:error, :broken_on_purpose}
      :good -> start_tree()
    end
  end

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
