"""Edeliver 2.0: build Erlang/Elixir releases and roll them out to many nodes over SSH."""
