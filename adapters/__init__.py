"""The adapters behind the core's ports (SSH nodes, stores, builds, event stores, local tools)."""

from edeliver.adapters import asyncssh_import

asyncssh_import.install()  # before any adapter imports asyncssh
