"""Reading the user's text files (parameter files, plans, run-directory tables) and quoting values.

One place decides what a readable text file is: UTF-8, with or without a byte-order mark (editors
on Windows write one). Anything else is a located error naming the file and the byte offset.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ctr.errors import CtrError, InputError

ENCODING = "utf-8-sig"  # UTF-8; a leading byte-order mark is dropped
MAX_QUOTE = 120  # characters of a user's value echoed in a message


def read_text(path: str | os.PathLike, what: str = "file", error: type[CtrError] = InputError) -> str:
    """The text of ``path``; an unreadable or non-UTF-8 file raises ``error`` naming the file."""
    path = Path(path)
    try:
        return path.read_text(encoding=ENCODING)
    except UnicodeDecodeError as exc:
        raise error(f"{path}: the {what} is not UTF-8 text ({exc.reason} at byte {exc.start})",
                    hint="save the file as UTF-8 (any text editor's 'Save as' offers it)") from None
    except IsADirectoryError:
        raise error(f"{path}: the {what} is a directory, not a file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None


def decode_error(path: str | os.PathLike, exc: UnicodeDecodeError, what: str = "file") -> InputError:
    """The located error for a file a library failed to decode (e.g. a CSV read by pandas)."""
    return InputError(f"{path}: the {what} is not UTF-8 text ({exc.reason} at byte {exc.start})",
                      hint="the file was changed after ctr wrote it; rerun `ctr annotate` to rewrite it")


def quote(value: object, limit: int = MAX_QUOTE) -> str:
    """``repr(value)``, cut to ``limit`` characters (a hostile 20 MB value must not fill the terminal)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def shorten(text: str, limit: int = 1000) -> str:
    """``text`` with every line longer than ``limit`` cut, saying how much was left out."""
    lines = []
    for line in text.split("\n"):
        if len(line) > limit:
            line = f"{line[:limit]}... ({len(line) - limit} more characters)"
        lines.append(line)
    return "\n".join(lines)


# a JSON string (kept whole, so a "//" inside one is text) or a // comment to the end of the line
_STRING_OR_COMMENT = re.compile(r'"(?:[^"\\\n]|\\.)*"|//[^\n]*')


def without_line_comments(text: str) -> str:
    """JSON text with its ``//`` comments blanked to spaces. JSON has no comments, but marker maps
    and parameter files are written by hand, and the user guide's examples carry them; blanking
    (not deleting) keeps every line and column where the file has it, for the error messages."""
    return _STRING_OR_COMMENT.sub(lambda m: m.group(0) if m.group(0)[0] == '"' else " " * len(m.group(0)), text)

