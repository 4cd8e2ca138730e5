"""The one exception tree of ShelfEdge, so callers can catch by meaning."""

from __future__ import annotations


class ShelfEdgeError(Exception):
    """Base of every error ShelfEdge raises on purpose."""


class ConfigError(ShelfEdgeError):
    """A config file is unreadable or invalid; ``problems`` lists each finding."""

    def __init__(self, path: str, problems: list[ConfigProblem]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(p.render(path) for p in problems))


class ConfigProblem:
    """One finding in a config file: where (line, field path) and what is expected."""

    __slots__ = ("field", "line", "message")

    def __init__(self, field: str, message: str, line: int | None = None) -> None:
        self.field = field
        self.message = message
        self.line = line

    def render(self, path: str) -> str:
        """Format as ``file:line: field: message`` (the form editors jump to)."""
        where = f"{path}:{self.line}" if self.line is not None else path
        return f"{where}: {self.field or '<root>'}: {self.message}"

    def __repr__(self) -> str:
        return f"ConfigProblem({self.field!r}, {self.message!r}, line={self.line})"


class FrameError(ShelfEdgeError):
    """An advertisement or app sighting of a known kind is malformed."""


class CommandRejected(ShelfEdgeError):
    """A central command was refused; ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


class ModelError(ShelfEdgeError):
    """A model file or its card is missing, corrupt or does not match the code."""


class OutboxError(ShelfEdgeError):
    """The on-disk outbox could not be opened or written."""
