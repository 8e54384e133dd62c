"""Parameter options given as inline JSON or ``@file.json`` (CLI) or dicts (Python API).

They are validated against the same models as ruleset parameter blocks, so an unknown key
is an error naming the valid keys, wherever it was written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ctr.errors import ParameterError
from ctr.rules.params import parse_block


def read_json_option(value: str | dict | None, option: str) -> dict[str, Any] | None:
    """Parse an option value: a dict (API), inline JSON, or ``@path`` to a JSON file."""
    if value is None or isinstance(value, dict):
        return value
    origin = option
    text = value
    if value.startswith("@"):
        path = Path(value[1:])
        origin = f"{option} {path}"
        try:
            text = path.read_text()
        except OSError as exc:
            raise ParameterError(f"{option}: cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        line = text.splitlines()[exc.lineno - 1] if text.splitlines() else ""
        caret = " " * (exc.colno - 1) + "^"
        where = f"{path}:{exc.lineno}:{exc.colno}" if value.startswith("@") else f"line {exc.lineno} column {exc.colno}"
        raise ParameterError(
            f"{origin}: invalid JSON at {where}: {exc.msg}\n    {line}\n    {caret}",
            hint='write an object such as \'{"level_defaults": {"0": {"min_coverage": 0.4}}}\' (keys in double quotes)',
        ) from None
    except RecursionError:
        raise ParameterError(f"{origin}: invalid JSON: nested too deeply",
                             hint="parameter blocks are flat objects, at most two levels deep (level_defaults)") from None
    if not isinstance(data, dict):
        raise ParameterError(f"{origin}: expected a JSON object {{...}}, got {type(data).__name__}")
    return data


def parameter_blocks(
    scoring: str | dict | None = None,
    gating: str | dict | None = None,
    refinement: str | dict | None = None,
    *,
    origin: str = "--{kind}-params",
) -> dict[str, Any]:
    """Validated partial blocks for the options that were given."""
    blocks = {}
    for kind, value in (("scoring", scoring), ("gating", gating), ("refinement", refinement)):
        name = origin.format(kind=kind)
        data = read_json_option(value, name)
        if data is not None:
            blocks[kind] = parse_block(kind, data, name)
    return blocks
