import Config

# Read when the release boots, not when it is built.
config :ledger, greeting: System.get_env("LEDGER_GREETING", "hello")
