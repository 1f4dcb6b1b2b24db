"""User-facing errors.

Every problem a user can cause (a bad file, a wrong option, a model that does not fit the data) is raised
as a :class:`VaedxError`. The CLI prints it as one line and exits non-zero, so users never see a traceback;
library callers can catch one type.
"""

from __future__ import annotations

from pathlib import Path


class VaedxError(Exception):
    """A problem the user can fix, described in one line that names the file when there is one."""

    def __init__(self, problem: str, path: str | Path | None = None):
        self.problem = problem
        self.path = str(path) if path is not None else None
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class InputError(VaedxError):
    """An input file is unreadable, corrupt, unsupported or inconsistent."""


class ConfigError(VaedxError):
    """Options or configuration do not make sense together."""


class ModelMismatchError(VaedxError):
    """A model is used on data it was not trained for (size, channels, preprocessing)."""
