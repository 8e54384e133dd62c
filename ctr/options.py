"""The user's options, read and validated once at the edge: parameter blocks given as inline JSON
or ``@file.json`` (CLI) or dicts (Python API), run parameters, and :class:`Choices` (ruleset,
tissue profile, preset, parameter blocks, refinement plan) as typed values.

Parameter blocks are validated against the same models as ruleset parameter blocks, so an unknown
key is an error naming the valid keys, wherever it was written.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctr.errors import ParameterError
from ctr.rules.model import Ruleset
from ctr.rules.params import parse_block
from ctr.rules.plan import RefinementPlan
from ctr.rules.tissues import TissueProfile
from ctr.textfile import quote, read_text, without_line_comments

# numpy's legacy RandomState, which scanpy and scikit-learn seed, takes 0 <= seed < 2**32
SEED_MAX = 2**32 - 1
KEY_ADDED_MAX = 64


def read_json_option(value: str | dict | None, option: str) -> dict[str, Any] | None:
    """Parse an option value: a dict (API), inline JSON, or ``@path`` to a JSON file."""
    if value is None or isinstance(value, dict):
        return value
    origin = option
    text = value
    if value.startswith("@"):
        path = Path(value[1:])
        origin = f"{option} {path}"
        text = read_text(path, f"{option} file", ParameterError)
    try:
        # '//' comments, as in the user guide's examples, are read as blanks (positions unchanged)
        data = json.loads(without_line_comments(text))
    except json.JSONDecodeError as exc:
        line = text.splitlines()[exc.lineno - 1] if text.splitlines() else ""
        start = max(0, exc.colno - 1 - 60)  # a window around the error, not a 20 MB line
        excerpt = ("..." if start else "") + line[start:exc.colno + 60] + ("..." if len(line) > exc.colno + 60 else "")
        caret = " " * (exc.colno - 1 - start + (3 if start else 0)) + "^"
        where = f"{path}:{exc.lineno}:{exc.colno}" if value.startswith("@") else f"line {exc.lineno} column {exc.colno}"
        raise ParameterError(
            f"{origin}: invalid JSON at {where}: {exc.msg}\n    {excerpt}\n    {caret}",
            hint='write an object such as \'{"level_defaults": {"0": {"min_coverage": 0.4}}}\' (keys in double quotes)',
        ) from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise ParameterError(f"{origin}: invalid JSON: {quote(str(exc))}") from None
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


def check_run_parameters(*, resolution: float = 1.0, n_pcs: int = 30, neighbors_k: int = 15,
                         random_seed: int = 0, key_added: str = "ctr") -> None:
    """Refuse values that mean nothing, before any data is read; the message names the option and its range."""
    problems = []
    if not (isinstance(resolution, (int, float)) and math.isfinite(resolution) and resolution > 0):
        problems.append(f"--resolution must be a finite number > 0 (got {quote(resolution)}); "
                        "higher values give more, smaller clusters (typical 0.2-2)")
    if not _is_int(n_pcs) or n_pcs < 1:
        problems.append(f"--n-pcs must be an integer >= 1 (got {quote(n_pcs)}); it is capped at the usable markers - 1")
    if not _is_int(neighbors_k) or neighbors_k < 2:
        problems.append(f"--neighbors-k must be an integer >= 2 (got {quote(neighbors_k)}); "
                        "each cell's neighbours in the kNN graph, itself included (typical 10-30)")
    if not _is_int(random_seed) or not 0 <= random_seed <= SEED_MAX:
        problems.append(f"--random-seed must be an integer from 0 to {SEED_MAX} (got {quote(random_seed)})")
    problem = key_added_problem(key_added)
    if problem:
        problems.append(problem)
    if problems:
        raise ParameterError("; ".join(problems))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def key_added_problem(key_added: object) -> str | None:
    """Why ``key_added`` cannot prefix obs columns and name the uns entry, or None when it can.

    HDF5 (the .h5ad format) splits names at '/', and an empty name would put ctr's record at the top of uns.
    """
    valid = f"a non-empty name of at most {KEY_ADDED_MAX} characters, without '/', spaces at either end or control characters"
    if not isinstance(key_added, str) or not key_added.strip():
        return f"--key-added must be {valid} (got {quote(key_added)})"
    if ("/" in key_added or key_added != key_added.strip() or len(key_added) > KEY_ADDED_MAX
            or any(ord(ch) < 32 or ord(ch) == 127 for ch in key_added)):
        return f"--key-added must be {valid} (got {quote(key_added)})"
    return None


def check_neighbors_k(neighbors_k: int, n_cells: int) -> None:
    """``--neighbors-k`` against the data: a kNN graph needs fewer neighbours than cells."""
    if n_cells < 3:
        raise ParameterError(f"clustering needs at least 3 cells; the data has {n_cells}",
                             hint="annotate existing labels with --annotation-only --cluster-key COLUMN")
    if neighbors_k >= n_cells:
        raise ParameterError(f"--neighbors-k {neighbors_k} is not below the number of cells ({n_cells}); "
                             f"give a value from 2 to {n_cells - 1}")


_SCHEDULER = re.compile(r"^(?:(?:tcp|tls|ucx|ws|wss)://)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):\d{1,5}$|^inproc://\S+$")


def scheduler_address(value: str | None) -> str | None:
    """``--dask-scheduler``: a dask.distributed scheduler's address (``tcp://HOST:PORT``, ``HOST:PORT``,
    tls/ucx/ws schemes), checked for its form before any data is read; None when not given."""
    if value is None:
        return None
    text = value.strip()
    if not _SCHEDULER.match(text) or not 0 < int(text.rsplit(":", 1)[-1] if not text.startswith("inproc") else 1) < 65536:
        raise ParameterError(f"--dask-scheduler {quote(value)} is not a scheduler address",
                             hint="give the address the scheduler prints, such as tcp://127.0.0.1:8786 or HOST:8786")
    return text


NONE = ("none", "None", "")  # "--tissue none" / "--preset none": do not keep the earlier run's


@dataclass(frozen=True)
class Choices:
    """The user's choices of what to annotate with, each read and validated once (at the CLI edge,
    or by :func:`ctr.api.annotate` for names and JSON given in a notebook); nothing below parses
    JSON or opens a parameter file again.

    ``None`` means "not given": a rerun on an output.h5ad keeps that run's choice; ``drop_tissue``
    and ``drop_preset`` record an explicit "none".
    """

    ruleset: Ruleset | None = None
    tissue: TissueProfile | None = None
    drop_tissue: bool = False
    preset: str | None = None
    drop_preset: bool = False
    blocks: dict[str, Any] = field(default_factory=dict)  # the command line's partial parameter blocks
    plan: RefinementPlan | None = None
    plan_origin: str = "refinement plan"
    var_names: str | None = None  # the var column that holds the marker names (--var-names)
    drop_var_names: bool = False  # "--var-names none": match var_names, never a column


def resolve_choices(
    *,
    ruleset: Ruleset | str | Path | None = None,
    marker_map: str | Path | None = None,
    tissue: str | None = None,
    preset: str | None = None,
    scoring_params: str | dict | None = None,
    gating_params: str | dict | None = None,
    refinement_params: str | dict | None = None,
    refinement_plan: str | Path | dict | RefinementPlan | None = None,
    var_names: str | None = None,
    warnings: list | None = None,
) -> Choices:
    """Read and validate every choice: the ruleset (compiled once; its warnings go to ``warnings``),
    the tissue profile, the preset, the ``--*-params`` blocks, the refinement plan and the var
    column of marker names (``"none"``: var_names; whether the column exists is seen with the data)."""
    from ctr.lang import load_ruleset
    from ctr.lang.plan_file import load_plan
    from ctr.rules.presets import preset_blocks
    from ctr.rules.tissues import load_tissue

    if ruleset is not None and marker_map is not None:
        raise ParameterError("give either a ruleset or a marker map, not both")
    source = marker_map if marker_map is not None else ruleset
    rs = source if isinstance(source, Ruleset) or source is None else load_ruleset(str(source), warnings)
    drop_tissue, drop_preset = tissue in NONE, preset in NONE
    profile = load_tissue(tissue) if tissue is not None and not drop_tissue else None
    if preset is not None and not drop_preset:
        preset_blocks(preset)  # an unknown name is an error naming the presets
    plan, origin = refinement_plan, "refinement plan"
    if isinstance(refinement_plan, (str, Path, dict)):
        plan = load_plan(refinement_plan)
        origin = str(refinement_plan) if not isinstance(refinement_plan, dict) else origin
    column, drop_column = var_names_choice(var_names)
    return Choices(ruleset=rs, tissue=profile, drop_tissue=drop_tissue, preset=None if drop_preset else preset,
                   drop_preset=drop_preset, blocks=parameter_blocks(scoring_params, gating_params, refinement_params),
                   plan=plan, plan_origin=origin, var_names=column, drop_var_names=drop_column)


def var_names_choice(value: object) -> tuple[str | None, bool]:
    """``--var-names``: ``(column, drop)``; ``(None, True)`` for "none" (var_names, no automatic choice)."""
    if value is None:
        return None, False
    if not isinstance(value, str):
        raise ParameterError(f"--var-names must name a var column (text), got {quote(value)}")
    if value.strip() in NONE:
        return None, True
    return value, False
