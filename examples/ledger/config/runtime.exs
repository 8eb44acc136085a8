import Config

# Read when the release boots, not when it is built: a per-node value, and secrets that
# edeliver.toml names (`from_env` on the deployer, `from_file` on the node), never their values.
config :ledger,
  greeting: System.get_env("LEDGER_GREETING", "hello"),
  secret: System.get_env("LEDGER_SECRET", ""),
  api_key: System.get_env("LEDGER_API_KEY", "")
