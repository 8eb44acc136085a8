# Recipes for developers who have `just`; each calls scripts/dev or the venv's tools.

test *args:
    scripts/dev test {{args}}

demo *args:
    scripts/dev demo {{args}}

lint:
    .venv/bin/ruff check core adapters cli tests bench
    .venv/bin/mypy -p edeliver.core -p edeliver.adapters -p edeliver.cli
    .venv/bin/python scripts/check_core_purity.py

bench:
    .venv/bin/python bench/simulated_rollout.py
