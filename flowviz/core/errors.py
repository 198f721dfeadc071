"""Errors flowviz raises for bad input. Each message names what was wrong and what is allowed."""


class FlowvizError(ValueError):
    """Base class: a user-facing error with a clear, one-line message."""


class FlowvizWarning(UserWarning):
    """Allowed but worth knowing: a key beyond a server's limit, a run over a server's budget."""


class ConfigError(FlowvizError):
    """A config key is unknown or a value is out of range."""


class DataError(FlowvizError):
    """A dataset (for example an uploaded CSV) is malformed."""


class CheckpointError(FlowvizError):
    """A saved run cannot be loaded: not ours, truncated, or of another shape."""


class TrainingDiverged(FlowvizError):
    """The loss became NaN or inf. ``result`` holds the last finite state."""

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result
