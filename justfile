# Recipes for developers who have `just`; each calls scripts/dev. Tiers need more real parts
# as they go: unit (pure, seconds), contract (each port's suite on its fake and real adapters),
# integration, e2e (sshd nodes, mix releases, BEAMs, S3, PostgreSQL), faults (the fault lab).

setup:
    scripts/dev setup

test *args:
    scripts/dev test {{args}}

unit *args:
    scripts/dev check unit {{args}}

contract *args:
    scripts/dev check contract {{args}}

integration *args:
    scripts/dev check integration {{args}}

e2e *args:
    scripts/dev check e2e {{args}}

faults *args:
    scripts/dev check faults {{args}}

lint:
    scripts/dev lint

demo *args:
    scripts/dev demo {{args}}

bench:
    .venv/bin/python bench/simulated_rollout.py
