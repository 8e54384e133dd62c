"""The one error hierarchy. The CLI turns any :class:`CtrError` into a message and an exit code.

Exit codes: 0 success, 1 bad input (data, ruleset, parameters, outputs), 2 usage error.
Anything that is not a CtrError is a bug in ctr; the CLI still prints a one-line message
(and the traceback only with ``--debug``).
"""

from __future__ import annotations

from collections.abc import Iterable

from ctr.diagnostics import Diagnostic


class CtrError(Exception):
    """A problem with what the user gave us, explained well enough to fix it."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None, diagnostics: Iterable[Diagnostic] = ()):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.diagnostics = list(diagnostics)

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class RulesetError(CtrError):
    """A ruleset that does not parse or validate; ``diagnostics`` holds the located problems."""


class ParameterError(CtrError):
    """A parameter value or JSON/YAML parameter block that is not valid."""


class InputError(CtrError):
    """An input data file that cannot be used as given (missing layer, bad values, ...)."""


class OutputError(CtrError):
    """A run directory that cannot be written safely."""


class UsageError(CtrError):
    """A command line that does not make sense (exit code 2)."""

    exit_code = 2
