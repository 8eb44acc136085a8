"""The environment rollout's lifecycle, like the node's (`lifecycle`): a deployment runs, may be
interrupted and resumed, and ends once: finished, refused or abandoned.

```
running ─interrupt→ interrupted ─resume→ running      (resume from running: its deployer died
running ─finish | refuse→ ended                        without recording it, `--force`)
running | interrupted ─abandon→ ended
```

The table is data checked by a model-less Machine; the Deployment aggregate guards its commands
with it and records the outcome. Values are the strings stored in events.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from edeliver.core.domain.lifecycle import TransitionTable


class RolloutState(StrEnum):
    RUNNING = "running"
    INTERRUPTED = "interrupted"  # its deployer recorded that it stopped: resumable
    ENDED = "ended"  # with an Outcome


class RolloutTrigger(StrEnum):
    INTERRUPT = "interrupt"
    RESUME = "resume"
    FINISH = "finish"
    REFUSE = "refuse"
    ABANDON = "abandon"


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUSED = "refused"
    ABANDONED = "abandoned"


class TaskOutcome(StrEnum):
    OK = "ok"
    FAILED = "failed"
    CLEANED = "cleaned"
    CLEANUP_FAILED = "cleanup_failed"


RUNNING, INTERRUPTED, ENDED = RolloutState.RUNNING, RolloutState.INTERRUPTED, RolloutState.ENDED

ROLLOUT: Final = TransitionTable(
    RolloutState,
    RUNNING,
    (
        (RolloutTrigger.INTERRUPT, (RUNNING,), INTERRUPTED),
        (RolloutTrigger.RESUME, (RUNNING, INTERRUPTED), RUNNING),
        (RolloutTrigger.FINISH, (RUNNING,), ENDED),
        (RolloutTrigger.REFUSE, (RUNNING,), ENDED),
        (RolloutTrigger.ABANDON, (RUNNING, INTERRUPTED), ENDED),
    ),
)
