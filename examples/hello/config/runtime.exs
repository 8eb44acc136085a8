import Config

# A value known only on the node, at boot: its <deploy path>/shared/hello.greeting, if any.
# A hot upgrade must keep it (edeliver renders this file into the new sys.config on the node).
if root = System.get_env("RELEASE_ROOT") do
  case File.read(Path.expand("../../shared/hello.greeting", root)) do
    {:ok, text} -> config :hello, greeting: String.trim(text)
    {:error, _} -> config :hello, greeting: "hello"
  end
end
