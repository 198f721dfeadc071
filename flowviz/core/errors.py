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

    def __init__(self, message: str, result: object = None):
        super().__init__(message)
        self.result = result


ECHO_LIMIT = 60


def echo(value: object, limit: int = ECHO_LIMIT) -> str:
    """A user's value as it may appear inside a message: ``repr`` for text, cut to ``limit`` characters.

    Messages quote what a user typed (a link value, a CSV cell, a file's content) so they can find it; a
    10,000-character key must not come back whole. How the message is shown (plain text) is the UI's job.
    """
    try:
        s = repr(value) if isinstance(value, str) else str(value)
    except ValueError:  # an int of more than 4,300 digits cannot even be printed
        assert isinstance(value, int)
        return f"a number of about {int(value.bit_length() * 0.30103)} digits"
    if len(s) > limit:
        s = f"{s[: limit - 1]}… ({len(s)} characters)"
    return s
