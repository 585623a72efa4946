"""Errors that the CLI turns into exit codes: InputError -> 2 (bad usage or input), PsrError -> 1."""

from __future__ import annotations


class PsrError(Exception):
    """A failure while doing the work (exit code 1)."""


class InputError(PsrError):
    """Bad input or usage (exit code 2). Formats as ``FILE:LINE: message`` when a location is known."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        self.message = message
        self.path = path
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.path is None:
            return self.message
        if self.line is None:
            return f"{self.path}: {self.message}"
        return f"{self.path}:{self.line}: {self.message}"


class OptionError(InputError):
    """A bad option value found by a config dataclass's ``__post_init__`` (exit code 2). ``option`` names the flag;
    the CLI reports it as click reports a bad value (``Invalid value for --flag: message``)."""

    def __init__(self, message: str, option: str | None = None):
        self.option = option
        super().__init__(message)

    def __str__(self) -> str:
        return f"Invalid value for {self.option}: {self.message}" if self.option else f"Invalid value: {self.message}"
