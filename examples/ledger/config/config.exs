import Config

config :ledger, greeting: "compiled-in"
