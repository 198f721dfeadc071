"""The states of a run or a job, and the questions the server asks of them."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["RunStatus"]


class RunStatus(StrEnum):
    """queued -> training -> done, cancelled or error. Compares equal to its text (``"done"``)."""

    QUEUED = "queued"  # waiting for a worker
    TRAINING = "training"  # a worker has it
    DONE = "done"
    CANCELLED = "cancelled"
    ERROR = "error"

    @property
    def finished(self) -> bool:
        """No more snapshots will come."""
        return self in (RunStatus.DONE, RunStatus.CANCELLED, RunStatus.ERROR)

    @property
    def reusable(self) -> bool:
        """Another session asking for the same key shares this one (a stopped or failed one is started anew)."""
        return self in (RunStatus.QUEUED, RunStatus.TRAINING, RunStatus.DONE)

    @property
    def waiting(self) -> bool:
        """Still waiting for a worker."""
        return self is RunStatus.QUEUED

    @property
    def active(self) -> bool:
        """Holding a worker now."""
        return self is RunStatus.TRAINING
