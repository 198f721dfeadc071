"""The states of a run or a job, and the questions the server asks of them."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["RunStatus"]


class RunStatus(StrEnum):
    """queued -> training -> done, cancelled or error; training -> paused -> queued again when resumed.
    Compares equal to its text (``"done"``)."""

    QUEUED = "queued"  # waiting for a worker
    TRAINING = "training"  # a worker has it
    PAUSED = "paused"  # stopped with its state kept (weights, optimiser, mini-batch generator): it can go on
    DONE = "done"
    CANCELLED = "cancelled"
    ERROR = "error"

    @property
    def finished(self) -> bool:
        """No more snapshots will come (a paused run's only when it is resumed)."""
        return self in (RunStatus.DONE, RunStatus.CANCELLED, RunStatus.ERROR, RunStatus.PAUSED)

    @property
    def reusable(self) -> bool:
        """Another session asking for the same key shares this one (a stopped or failed one is started anew)."""
        return self in (RunStatus.QUEUED, RunStatus.TRAINING, RunStatus.DONE, RunStatus.PAUSED)

    @property
    def waiting(self) -> bool:
        """Still waiting for a worker."""
        return self is RunStatus.QUEUED

    @property
    def active(self) -> bool:
        """Holding a worker now."""
        return self is RunStatus.TRAINING
