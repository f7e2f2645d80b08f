"""Fault-injection points for the fault suite: ``LLMOPT_FAULT_POINT=<name>`` makes the
operator process exit at once (as a crash or an OOM kill would) when it reaches that
point. Unset, as in every real deployment, a point does nothing."""

from __future__ import annotations

import os
import sys

ENV = "LLMOPT_FAULT_POINT"
EXIT_CODE = 86

# Between writing a trial's record to the policy's status and creating its Rollout.
TRIAL_RECORDED = "trial-recorded"
# Between creating a trial's Rollout and the end of the cycle (its status write).
TRIAL_ROLLOUT_CREATED = "trial-rollout-created"


def point(name: str) -> None:
    """Exit here when the fault suite asked for this point."""
    if os.environ.get(ENV) == name:
        sys.stderr.write(f"fault injection: exiting at {name}\n")
        sys.stderr.flush()
        os._exit(EXIT_CODE)
