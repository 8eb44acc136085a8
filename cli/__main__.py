"""`python -m edeliver.cli`: the same as the `edeliver` script."""

from edeliver.cli.main import main

main()
