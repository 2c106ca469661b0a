"""The tool's own error types: every expected failure is one of these, shown as one line."""

from __future__ import annotations

from kubectl_proxydoctor.clip import MESSAGE_LIMIT, clip
from kubectl_proxydoctor.exit_status import ExitStatus

DETAIL_LIMIT = 300  # characters of a parse error's detail

# the documented codes (exit_status.ExitStatus), under the names the commands have used
EXIT_OK = ExitStatus.OK
EXIT_DRIFT = ExitStatus.PROBLEM
EXIT_USAGE = ExitStatus.USAGE
EXIT_UNREADABLE = ExitStatus.UNKNOWN


class ProxyDoctorError(Exception):
    """An expected failure with a clear one-line message and an exit code."""

    exit_code: int = EXIT_UNREADABLE

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(clip(message, MESSAGE_LIMIT))
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(ProxyDoctorError):
    """The command line asks for something that cannot be done (exit 2)."""

    exit_code = EXIT_USAGE


class ParseError(ProxyDoctorError):
    """Input text that is not in the expected format: names the source and line."""

    def __init__(self, source: str, message: str, line: int | None = None) -> None:
        where = f"{source}:{line}" if line is not None else source
        message = clip(message, DETAIL_LIMIT)  # a bad word can be megabytes: name it, do not print it
        super().__init__(f"{where}: {message}")
        self.source = source
        self.line = line
        self.detail = message


class BundleError(ProxyDoctorError):
    """A capture bundle that cannot be read (corrupt, truncated, unsafe)."""


class SourceUnavailable(ProxyDoctorError):
    """A kernel or API source that could not be read (no privilege, missing tool, ...)."""
