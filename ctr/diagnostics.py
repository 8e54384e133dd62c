"""Compiler-style diagnostics: values collected in a list, printed as ``path:line:col: CODE severity: message``.

Every code a user can see is registered in :data:`CODES` with its default severity and a
one-line title; ``docs/errors.md`` documents each one with cause and fix.
Code ranges: CTR1xx syntax, CTR2xx ruleset structure, CTR3xx panel checks,
CTR4xx parameters, CTR5xx input data, CTR6xx run directory and outputs, CTR7xx evaluation.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from ctr.codes import CODES, Severity


class SourceLoc(BaseModel):
    """Where a rule came from: file and 1-based line/column (end inclusive of the last char)."""

    model_config = ConfigDict(frozen=True)

    file: str | None = None
    line: int | None = None
    column: int | None = None
    end_line: int | None = None
    end_column: int | None = None

    def __str__(self) -> str:
        parts = [display_path(self.file) if self.file else "<string>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


@functools.lru_cache(maxsize=256)  # one resolve per file, not one per diagnostic
def display_path(file: str) -> str:
    """How a file is shown in messages: built-in rulesets as ``rulesets/NAME.ctr`` (wherever the
    package is installed), user files as given."""
    from pathlib import Path

    from ctr.resources import rulesets_dir

    try:
        return str(Path("rulesets") / Path(file).resolve().relative_to(rulesets_dir().resolve()))
    except (ValueError, OSError):
        return file


EXCERPT_WIDTH = 160  # characters of a source line shown under a diagnostic


@functools.lru_cache(maxsize=8)  # str hashes are cached, so a 2 MB source is split once, not per diagnostic
def _lines(source: str) -> list[str]:
    return source.splitlines()


def preview_names(names, limit: int = 10) -> str:
    """The first ``limit`` names, comma-joined, then how many more: messages stay short for any input."""
    names = [str(n) for n in names]
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def register(code: str, severity: Severity, title: str) -> str:
    """Deprecated: codes live in ctr/codes.py. Kept so that a branch still registering a code keeps
    working until it moves the code there (tests/test_docs.py fails while any module calls this)."""
    from ctr.codes import Code

    CODES.setdefault(code, Code(severity, title, code))
    return code


@dataclass(frozen=True)
class Diagnostic:
    code: str
    message: str
    loc: SourceLoc | None = None
    severity: Severity | None = None  # None: the code's default (ctr.codes)
    hint: str | None = None

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"diagnostic code {self.code!r} is not in ctr.codes.CODES; add it there and to docs/errors.md")

    @property
    def level(self) -> Severity:
        if self.severity is not None:
            return self.severity
        return CODES[self.code].severity

    def header(self) -> str:
        where = f"{self.loc}: " if self.loc is not None else ""
        return f"{where}{self.code} {self.level}: {self.message}"

    def format(self, source: str | None = None) -> str:
        """The header, a caret excerpt of the source line when ``source`` is given, and the hint."""
        lines = [self.header()]
        if source is not None and self.loc is not None and self.loc.line:
            text_lines = _lines(source)
            if 0 < self.loc.line <= len(text_lines):
                text = text_lines[self.loc.line - 1]
                col = max((self.loc.column or 1) - 1, 0)
                width = 1
                if self.loc.end_line == self.loc.line and self.loc.end_column:
                    width = max(self.loc.end_column - col, 1)
                if len(text) > EXCERPT_WIDTH:  # a window around the column, not a 1 MB line per diagnostic
                    start = max(0, col - EXCERPT_WIDTH // 2)
                    cut = "..." if start + EXCERPT_WIDTH < len(text) else ""
                    text = ("..." if start else "") + text[start:start + EXCERPT_WIDTH] + cut
                    col = col - start + (3 if start else 0)
                    width = min(width, EXCERPT_WIDTH)
                gutter = f"{self.loc.line:>4} | "
                lines.append(gutter + text)
                lines.append(" " * (len(gutter) + col) + "^" * width)
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        loc = self.loc.model_dump() if self.loc is not None else None
        return {"code": self.code, "severity": self.level, "message": self.message, "location": loc, "hint": self.hint}


@dataclass
class DiagnosticList:
    """An ordered collection of diagnostics with the queries lint and the CLI need."""

    items: list[Diagnostic] = field(default_factory=list)

    def add(self, diag: Diagnostic) -> None:
        self.items.append(diag)

    def extend(self, diags) -> None:
        self.items.extend(diags)

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.level == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.level == "warning"]

    def sorted(self) -> list[Diagnostic]:
        def key(d: Diagnostic):
            loc = d.loc or SourceLoc()
            return (loc.file or "", loc.line or 0, loc.column or 0, d.code)

        return sorted(self.items, key=key)

    def to_json(self) -> str:
        return json.dumps([d.to_dict() for d in self.sorted()], indent=2)


def did_you_mean(name: str, candidates, n: int = 1, key=str) -> str:
    """A ' (did you mean X?)' suffix, or '' when nothing is close. ``name`` is compared with
    ``key(candidate)`` (file names by their stem: a shared '.ctr' must not make 'y.ctr' look like
    'foo.ctr')."""
    import difflib

    lowered = {key(c).lower(): c for c in candidates}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)
    if not hits:
        return ""
    return " (did you mean " + " or ".join(f"'{lowered[h]}'" for h in hits) + "?)"
