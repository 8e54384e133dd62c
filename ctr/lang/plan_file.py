"""Read a refinement plan file (``--refinement-plan plan.yaml``) into :class:`ctr.rules.plan.RefinementPlan`."""

from __future__ import annotations

from pathlib import Path

import yaml

from ctr.errors import ParameterError
from ctr.rules.plan import PLAN_HINT, RefinementPlan, plan_from_data
from ctr.textfile import read_text


def load_plan(source: str | Path | dict) -> RefinementPlan:
    """Read and validate a plan (a YAML file path, or a dict)."""
    if isinstance(source, dict):
        return plan_from_data(source)
    path = Path(source)
    try:
        text = read_text(path, "refinement plan", ParameterError)
        if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text)):
            # anchors/aliases can expand a small file into a huge document; a plan never needs them
            raise ParameterError(f"{path}: YAML anchors and aliases (*name) are not allowed in a refinement plan; "
                                 "write each operation out")
        data = yaml.safe_load(text)
    except OSError as exc:
        raise ParameterError(f"{path}: cannot read the refinement plan: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ParameterError(f"{where}: invalid YAML in the refinement plan: {getattr(exc, 'problem', exc)}",
                             hint=PLAN_HINT) from None
    except RecursionError:
        raise ParameterError(f"{path}: invalid YAML in the refinement plan: nested too deeply", hint=PLAN_HINT) from None
    return plan_from_data(data, str(path))
