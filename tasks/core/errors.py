"""Errors that name the file, the line (or field) and the rule broken."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: `u.data line 17: rule 'rating-range' broken: rating must be 1..5, got '7'`."""

    def __init__(self, file: str, line: int | None, rule: str, detail: str, field: str | None = None):
        self.file, self.line, self.rule, self.detail, self.field = file, line, rule, detail, field
        where = file
        if line is not None:
            where += f" line {line}"
        if field is not None:
            where += f" field '{field}'"
        super().__init__(f"{where}: rule '{rule}' broken: {detail}")


class SourceUnavailable(RuntimeError):
    """The MovieLens files could not be obtained; the message says how to point lensflow at a copy."""


class ClusterUnavailable(RuntimeError):
    """The Dask scheduler named for sharded scoring does not answer (bad host, nothing listening, no reply)."""


class CannotListen(RuntimeError):
    """A server cannot listen where it was asked: the port is taken, or the host is no address of this machine."""


class ConfigError(ValueError):
    """A setting or option the user gave is not valid (unknown model config key, bad value)."""


class NotFound(LookupError):
    """Something the user named does not exist: a user, an item, a model version, a stored split."""


class DataLocationBusy(RuntimeError):
    """Another run holds the data location's writer lock (tasks/core/writer.py); the message names it."""


class DiskFull(OSError):
    """No space left where a step writes; the message names the path and the operation (tasks/core/environment.py)."""


class ServerUnavailable(RuntimeError):
    """A server lensflow needs (MLflow tracking, Prefect API) does not answer; the message names the URL and setting."""
