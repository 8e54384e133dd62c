"""``ctr diff RUN_A RUN_B``: which clusters changed, the first gate whose outcome differs, and the
parameter differences that explain it. A view of the two traces and the two params.json files.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from ctr.errors import UsageError
from ctr.engine.trace import Step
from ctr.report.explain import format_number, json_ready
from ctr.report.rundir_view import RunDir, load_run
from ctr.report.sentences import measure

FORMATS = ("text", "markdown", "json")
# Keys that differ between any two runs and explain nothing.
NOISE_KEYS = ("provenance.created",)
PARAMETER_OPTIONS = ("pipeline.scoring_params", "pipeline.gating_params", "pipeline.refinement_params")
# differ between any two runs without explaining anything about the labels
NOISE_PREFIXES = ("clustering.timings.", "pipeline.output_dir", "pipeline.force", "pipeline.no_report")
# what decides labels; everything else (pipeline options, clustering facts) is run context
PARAMETER_PREFIXES = ("scoring.", "gating.", "refinement.", "ruleset.", "tissue.")


@dataclass
class ParamChange:
    key: str
    before: object
    after: object
    source_before: str = ""
    source_after: str = ""


@dataclass
class GateChange:
    """The first trace row (in run A's step order) whose outcome differs between the runs."""

    step: int
    level: int
    cell_type: str
    kind: str
    gate: str
    measure: str  # what the gate measured, in words
    param_key: str  # the parameter that set its threshold (empty for a number written in a rule)
    before: str
    after: str
    explained_by: list[ParamChange] = field(default_factory=list)


@dataclass
class ClusterChange:
    cluster: str
    label_before: str
    label_after: str
    stop_before: str
    stop_after: str
    first_difference: GateChange | None


@dataclass
class RunDiff:
    run_a: str
    run_b: str
    params: list[ParamChange]
    provenance: list[ParamChange]
    changed: list[ClusterChange]
    only_a: list[str]
    only_b: list[str]
    n_common: int
    unassigned: tuple[int, int]
    unassigned_cells: tuple[int, int]
    stop_changes: dict[str, int]


def diff_runs(run_a: str | Path, run_b: str | Path, fmt: str = "text") -> str:
    """What changed from ``run_a`` to ``run_b`` and why, as text, markdown or JSON."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown diff format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    result = compare_runs(load_run(run_a), load_run(run_b))
    if fmt == "json":
        return json.dumps(json_ready(asdict(result)), indent=2, default=str)
    return render_diff(result, markdown=fmt == "markdown")


def compare_runs(a: RunDir, b: RunDir) -> RunDiff:
    params, provenance = _param_changes(a.params, b.params)
    ca, cb = a.clusters.set_index("cluster"), b.clusters.set_index("cluster")
    common = [c for c in ca.index if c in cb.index]
    changed = []
    for cluster in common:
        ra, rb = ca.loc[cluster], cb.loc[cluster]
        if ra["final_annotation"] == rb["final_annotation"] and ra.get("stop_reason") == rb.get("stop_reason"):
            continue
        first = first_difference(a.trace_of(cluster), b.trace_of(cluster))
        if first is not None:
            first.explained_by = _explaining(first, params)
        changed.append(ClusterChange(cluster, str(ra["final_annotation"]), str(rb["final_annotation"]),
                                     str(ra.get("stop_reason", "")), str(rb.get("stop_reason", "")), first))
    stops = Counter(f"{c.stop_before} -> {c.stop_after}" for c in changed if c.stop_before != c.stop_after)
    return RunDiff(
        run_a=str(a.path), run_b=str(b.path), params=params, provenance=provenance, changed=changed,
        only_a=[c for c in ca.index if c not in cb.index], only_b=[c for c in cb.index if c not in ca.index],
        n_common=len(common),
        unassigned=(_unassigned(a)[0], _unassigned(b)[0]),
        unassigned_cells=(_unassigned(a)[1], _unassigned(b)[1]),
        stop_changes=dict(stops.most_common()),
    )


def first_difference(trace_a: pd.DataFrame, trace_b: pd.DataFrame) -> GateChange | None:
    """The first row of run A's trace (step order) whose outcome differs in run B, else the first
    row only run B evaluated. Rows are matched by what was evaluated, not by step number."""
    rows_b = {_key(r): r for r in trace_b.to_dict("records")}
    seen = set()
    for ra in trace_a.to_dict("records"):
        key = _key(ra)
        seen.add(key)
        rb = rows_b.get(key)
        if rb is None:
            return _change(ra, _outcome(ra), "not evaluated")
        if _verdict(ra) != _verdict(rb):
            return _change(ra, _outcome(ra), _outcome(rb))
    for rb in trace_b.to_dict("records"):
        if _key(rb) not in seen:
            return _change(rb, "not evaluated", _outcome(rb))
    return None


def _key(row: dict) -> tuple:
    if row["kind"] == "select":  # the chosen cell type is the outcome, not the identity
        return ("select", int(row["level"]), row["path"])
    return (row["kind"], int(row["level"]), row["path"], row["gate"], row.get("marker", ""),
            row.get("statistic", ""), row.get("expression", ""))


def _verdict(row: dict) -> tuple:
    """What a row decided: pass/fail for a gate, the outcome and chosen type for a selection."""
    if row["kind"] == "select":
        return (row["gate"], row["cell_type"])
    return (bool(row["passed"]),)


def _outcome(row: dict) -> str:
    step = Step.from_record(row)
    observed = "missing" if _nan(step.observed) else format_number(step.observed)
    if step.kind == "select":
        chosen = f" {step.cell_type}" if step.cell_type else ""
        return f"{step.gate}{chosen} (margin {observed}, min_gap {format_number(step.threshold)})"
    verdict = "passed" if step.passed else "failed"
    where = f"; rule {step.location or step.layer or 'default'}, from {step.layer or 'default'}"
    return f"{observed} {step.comparison} {format_number(step.threshold)} {verdict}{where}"


def _change(row: dict, before: str, after: str) -> GateChange:
    step = Step.from_record(row)
    return GateChange(step=step.step, level=step.level, cell_type=step.cell_type, kind=step.kind, gate=step.gate,
                      measure=measure(step), param_key=step.param_key, before=before, after=after)


def _explaining(change: GateChange, params: list[ParamChange]) -> list[ParamChange]:
    """The parameter changes that set this row's threshold: its own key first, the same parameter at
    another level or type next; a number written in a rule points at the ruleset."""
    key = change.param_key
    hits = [p for p in params if p.key == key] if key else []
    if key and not hits:
        name = key.rsplit(".", 1)[1]
        hits = [p for p in params if p.key.endswith(f".{name}")]
    if not key:  # the threshold lives in the rule: the ruleset (its hash) differs
        hits = [p for p in params if p.key.startswith("ruleset.")]
    if not hits:  # the observed value moved: scoring parameters or the ruleset changed
        hits = [p for p in params if p.key.startswith(("scoring.", "ruleset."))]
    return hits


def _param_changes(pa: dict, pb: dict) -> tuple[list[ParamChange], list[ParamChange]]:
    fa, fb = _flatten(pa), _flatten(pb)
    sa, sb = pa.get("sources") or {}, pb.get("sources") or {}
    params, provenance = [], []
    same_ruleset = fa.get("ruleset.sha256") is not None and fa.get("ruleset.sha256") == fb.get("ruleset.sha256")
    clustered = [any(k.startswith("clustering.") for k in f) for f in (fa, fb)]
    if clustered[0] != clustered[1]:
        # one run clustered, the other reused its input's clusters: one line, not one per clustering fact
        n = [f.get("clustering.n_clusters") for f in (fa, fb)]
        said = [f"clustered ({c} clusters)" if done else "reused the input's clusters" for done, c in zip(clustered, n)]
        provenance.append(ParamChange("clustering", said[0], said[1]))
    for key in list(dict.fromkeys([*fa, *fb])):
        if (key.startswith(("sources.", *NOISE_PREFIXES)) or key in NOISE_KEYS
                or key.endswith(("source_text", "ruleset.source"))):
            continue
        if clustered[0] != clustered[1] and key.startswith("clustering."):
            continue
        if same_ruleset and key in ("ruleset.source_file", "ruleset.stored_copy"):
            continue  # the same ruleset, read from the package once and from the input's stored copy later
        if key in PARAMETER_OPTIONS:
            continue  # the option's text; the values it set are compared under the parameters, with their source
        if same_ruleset and key == "pipeline.ruleset" and None in (fa.get(key), fb.get(key)):
            continue  # a rerun that kept the earlier run's ruleset without --ruleset: nothing changed
        if fa.get(key) == fb.get(key):
            continue
        change = ParamChange(key, fa.get(key), fb.get(key), str(sa.get(key, "default")), str(sb.get(key, "default")))
        (params if key.startswith(PARAMETER_PREFIXES) else provenance).append(change)
    return params, provenance


def _unassigned(run: RunDir) -> tuple[int, int]:
    mask = (run.clusters["final_annotation"] == "Unassigned").to_numpy()
    cells = pd.to_numeric(run.clusters.get("n_cells", pd.Series([0] * len(mask))), errors="coerce").fillna(0)
    return int(mask.sum()), int(cells.to_numpy()[mask].sum())


# --- rendering ---------------------------------------------------------------------------------------


def render_diff(d: RunDiff, markdown: bool = False) -> str:
    h = (lambda t: f"## {t}") if markdown else (lambda t: f"{t}:")  # noqa: E731
    item = "- " if markdown else "  "
    sub = "  - " if markdown else "      "
    lines = [f"# ctr diff: {d.run_a} -> {d.run_b}" if markdown else f"ctr diff: {d.run_a} -> {d.run_b}", ""]
    stops = "; ".join(f"{k}: {v}" for k, v in d.stop_changes.items()) or "none"
    lines += [h("Summary"),
              f"{item}{len(d.changed)} of {d.n_common} clusters changed label or stop reason",
              f"{item}unassigned clusters {d.unassigned[0]} -> {d.unassigned[1]} "
              f"(cells {d.unassigned_cells[0]} -> {d.unassigned_cells[1]})",
              f"{item}stop reason changes: {stops}"]
    if d.only_a:
        lines.append(f"{item}clusters only in run A: {', '.join(d.only_a)}")
    if d.only_b:
        lines.append(f"{item}clusters only in run B: {', '.join(d.only_b)}")
    lines += ["", h("Parameters that differ")]
    lines += [f"{item}{_param_line(p)}" for p in d.params] or [f"{item}none"]
    if d.provenance:
        lines += ["", h("Provenance that differs")] + [f"{item}{_param_line(p)}" for p in d.provenance]
    lines += ["", h("Changed clusters")]
    if not d.changed:
        lines.append(f"{item}none")
    for c in d.changed:
        stop = f" (stop {c.stop_before} -> {c.stop_after})" if c.stop_before != c.stop_after else f" (stop {c.stop_after})"
        lines.append(f"{item}cluster {c.cluster}: {c.label_before} -> {c.label_after}{stop}")
        g = c.first_difference
        if g is None:
            lines.append(f"{sub}no gate outcome differs in the traces")
            continue
        what = (f"selection at level {g.level}" if g.kind == "select"
                else f"{g.gate} gate of {g.cell_type} ({g.measure}) at level {g.level}")
        lines.append(f"{sub}first differing gate (step {g.step}): {what}: {g.before} -> {g.after}")
        if g.explained_by:
            lines.append(f"{sub}explained by: " + "; ".join(_param_line(p) for p in g.explained_by))
        else:
            lines.append(f"{sub}explained by: no parameter difference (the data or the clustering changed)")
    return "\n".join(lines) + "\n"


def _param_line(p: ParamChange) -> str:
    src = f" ({p.source_before} -> {p.source_after})" if p.source_before != p.source_after else ""
    return f"{p.key}: {_show(p.before)} -> {_show(p.after)}{src}"


def _show(value) -> str:
    if value is None:
        return "(absent)"
    if isinstance(value, float):
        return f"{value:g}"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _flatten(obj, prefix: str = "") -> dict[str, object]:
    if isinstance(obj, dict) and obj:
        out: dict[str, object] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): obj}


def _nan(value) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False
