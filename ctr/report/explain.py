"""Why each cluster got its label: a view of the trace (decision_steps), never a second engine.

``explain_clusters`` turns a run directory into :class:`ClusterExplanation` records (also used by
the HTML report); ``explain_run`` renders them as text, markdown or JSON for ``ctr explain``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from ctr.engine.trace import Step, isnan, read_float
from ctr.errors import InputError, UsageError
from ctr.report.rundir_view import RunDir, load_run, run_from_result
from ctr.report.sentences import (
    describe, format_number, measure, parameter_name, steps_of, tie_break_clause, vote_shares,
)
from ctr.report.thresholds import MarkerSplit, splits_by_name
from ctr.rules.model import PATH_SEP

FORMATS = ("text", "markdown", "json")

STOP_REASONS = {
    "leaf_reached": "reached the most specific type in the ruleset",
    "no_root_passed": "no top-level cell type passed its gates",
    "no_child_passed": "no subtype passed its gates, so the label stays at the parent",
    "not_assessable_root": "the panel measures none of the markers that judge a top-level cell type",
    "not_assessable_children": "the panel measures none of the markers that judge a subtype, so the label stays at the parent",
    "ambiguous_root": "two or more top-level types scored too close to call",
    "ambiguous_siblings": "two or more subtypes scored too close to call, so the label stays at the parent",
    "refined_relabel": "refinement moved the label down to the subtype most of its cells vote for",
    "manual_relabel": "relabelled by the manual refinement plan",
    "manual_override": "label set by the manual refinement plan",
    "cell_vote": "this cell descended below its cluster's label on its own vote (--unit cell)",
}

SPLIT_GATES = ("requirement", "veto")  # the gate rows that name one marker's positivity


@dataclass
class Candidate:
    cell_type: str
    path: str
    score: float
    passed: bool
    gates: list[Step] = field(default_factory=list)

    @property
    def failed(self) -> list[Step]:
        return [g for g in self.gates if not g.passed]

    @property
    def shown(self) -> list[Step]:
        """The gates an explanation lists: the failed ones, any whose threshold a more specific
        rule kept against a later layer's wider value, and a coverage that a subtype carried."""
        return [g for g in self.gates if not g.passed or g.shadowed_key or (g.gate == "coverage" and g.candidates)]


@dataclass
class LevelDecision:
    """The candidates gated at one level under one parent, and how the selection went."""

    level: int
    parent: str
    candidates: list[Candidate]
    outcome: str  # winner | ambiguous | none_passed | leaf | (empty when no selection row)
    chosen: str
    margin: float
    min_gap: float
    gap_loc: str  # file:line:col of what set min_gap, empty when not a file
    settled_by: str = ""  # a near-tie settled by the evidence: what the winner had better (its tie_break row)

    @property
    def passing(self) -> list[Candidate]:
        return [c for c in self.candidates if c.passed]


@dataclass
class NearMiss:
    """What would have to change for the runner-up (or the closest candidate) to win."""

    candidate: str
    leader: str
    level: int
    margin: float
    changes: list[str]
    sentence: str


@dataclass
class StateCall:
    """A cell state that applies to the cluster's label: called or not, and its gate rows."""

    state: str
    called: bool
    gates: list[Step]


@dataclass
class ClusterExplanation:
    cluster: str
    label: str
    path: list[str]
    stop_reason: str
    confidence: float
    n_cells: int | None
    score: float
    levels: list[LevelDecision]
    near_miss: NearMiss | None
    closest: Candidate | None  # for Unassigned clusters: the root that came closest
    votes: dict[str, float]
    refinement: list[str]
    summary: str
    states: list[StateCall] = field(default_factory=list)
    # marker named by a requirement or veto row -> its positivity split ('EPCAM >= 1.509 (mixture, D 9.69)')
    marker_splits: dict[str, str] = field(default_factory=dict)

    def split_note(self, g: Step) -> str:
        """' [split EPCAM >= 1.509 (mixture, D 9.69)]' after a requirement or veto row, else ''."""
        phrase = self.marker_splits.get(g.marker) if g.gate in SPLIT_GATES else None
        return f" [split {phrase}]" if phrase else ""

    def to_dict(self) -> dict:
        return json_ready(asdict(self))


def explain_run(run_dir: str | Path, clusters: list[str] | None = None, fmt: str = "text") -> str:
    """Explain, gate by gate, why each cluster (or the ones named) of ``run_dir`` got its label."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown explain format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    return render(explain_clusters(load_run(run_dir), clusters), fmt)


def explain_tables(result, clusters: list[str] | None = None, fmt: str = "text") -> str:
    """``explain_run`` for an in-memory ``ctr.api.AnnotationResult`` (``result.explain()`` in a notebook)."""
    return render(explain_clusters(run_from_result(result), clusters), fmt)


def render(explanations: list[ClusterExplanation], fmt: str = "text") -> str:
    """Render explanations as text, markdown or JSON."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown explain format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    if fmt == "json":
        return json.dumps([e.to_dict() for e in explanations], indent=2)
    one = render_markdown if fmt == "markdown" else render_text
    return "\n\n".join(one(e) for e in explanations) + "\n"


def explain_clusters(run: RunDir, clusters: list[str] | None = None) -> list[ClusterExplanation]:
    """Structured explanations of ``clusters`` (all when None), in the run's cluster order."""
    valid = run.cluster_ids
    if clusters:
        unknown = [c for c in clusters if c not in valid]
        if unknown:
            raise InputError(f"{run.path}: unknown cluster id(s) {', '.join(map(repr, unknown))}; "
                             f"valid ids: {', '.join(valid)}")
    wanted = [c for c in valid if not clusters or c in clusters]
    splits = splits_by_name(run)
    return [explain_cluster(run, c, splits) for c in wanted]


def explain_cluster(run: RunDir, cluster: str, splits: dict[str, MarkerSplit] | None = None) -> ClusterExplanation:
    row = run.cluster_row(cluster)
    levels = _levels(run, cluster)
    label = str(row.get("final_annotation", ""))
    stop = str(row.get("stop_reason", ""))
    # Unassigned and ambiguous-root clusters carry their label as annotation_path: no node was reached.
    reached_none = stop in ("no_root_passed", "not_assessable_root", "ambiguous_root") or label == "Unassigned"
    path = [] if reached_none else [p for p in str(row.get("annotation_path", "")).split(PATH_SEP) if p]
    closest = _closest_root(levels) if not path and levels else None
    expl = ClusterExplanation(
        cluster=cluster,
        label=label,
        path=path,
        stop_reason=stop,
        confidence=read_float(row.get("confidence")),
        n_cells=int(row["n_cells"]) if "n_cells" in row and pd.notna(row["n_cells"]) else None,
        score=read_float(row.get("score")),
        levels=levels,
        near_miss=_near_miss(levels, str(row.get("runner_up", ""))),
        closest=closest,
        votes=_votes(row, run.trace_of(cluster)),
        refinement=_refinement(run, row),
        summary="",
        states=_states(run, cluster),
    )
    expl.summary = _summary(expl)
    expl.marker_splits = _gate_splits(levels, splits_by_name(run) if splits is None else splits)
    return expl


def _gate_splits(levels: list[LevelDecision], splits: dict[str, MarkerSplit]) -> dict[str, str]:
    named = {g.marker for d in levels for c in d.candidates for g in c.gates if g.gate in SPLIT_GATES and g.marker}
    return {m: splits[m].phrase for m in sorted(named) if m in splits}


# --- building the records from the trace -------------------------------------------------------


def _levels(run: RunDir, cluster: str) -> list[LevelDecision]:
    scores, passed = _candidate_scores(run, cluster)
    decisions: list[LevelDecision] = []
    groups: dict[tuple[int, str], list[Step]] = {}
    selections: dict[tuple[int, str], Step] = {}  # the last selection under each parent
    ties: dict[tuple[int, str], Step] = {}  # a near-tie the evidence settled, under each parent
    for g in run.steps_of(cluster):
        if g.kind == "gate":
            groups.setdefault((g.level, _parent(g.path)), []).append(g)
        elif g.kind == "select" and g.gate == "tie_break":
            ties[(g.level, g.path)] = g
        elif g.kind == "select":
            selections[(g.level, g.path)] = g
    for (level, parent), results in groups.items():
        by_path: dict[str, Candidate] = {}
        for g in results:
            cand = by_path.setdefault(g.path, Candidate(g.cell_type, g.path, scores.get(g.path, math.nan), True))
            cand.gates.append(g)
        for cand in by_path.values():
            cand.passed = passed.get(cand.path, not cand.failed)
        ranked = sorted(by_path.values(), key=lambda c: (not c.passed, -_sortable(c.score)))
        decision = _decision(level, parent, ranked, selections.get((level, parent)))
        if (level, parent) in ties:
            decision.settled_by = tie_break_clause(ties[(level, parent)])
        decisions.append(decision)
    return decisions


def _decision(level: int, parent: str, candidates: list[Candidate], step: Step | None) -> LevelDecision:
    if step is None:
        chosen = candidates[0].cell_type if candidates and candidates[0].passed else ""
        return LevelDecision(level, parent, candidates, "", chosen, math.nan, math.nan, "")
    return LevelDecision(level, parent, candidates, step.gate, step.cell_type, step.observed, step.threshold, step.location)


def _candidate_scores(run: RunDir, cluster: str) -> tuple[dict[str, float], dict[str, bool]]:
    """Score and pass/fail per node path, from gating_details (marker_scores as a fallback)."""
    scores: dict[str, float] = {}
    passed: dict[str, bool] = {}
    for name in ("scores", "gating"):
        table = getattr(run, name)
        if table.empty or "score" not in table.columns:
            continue
        rows = run.rows_of(name, cluster)
        key = rows["path"] if "path" in rows.columns else rows["cell_type"]
        scores.update(dict(zip(key, rows["score"].astype(float))))
        if "passed" in rows.columns:
            passed.update(dict(zip(key, rows["passed"].astype(bool))))
    return scores, passed


def _parent(path: str) -> str:
    return path.rsplit(PATH_SEP, 1)[0] if PATH_SEP in path else ""


def _closest_root(levels: list[LevelDecision]) -> Candidate | None:
    roots = [c for d in levels if d.level == 0 for c in d.candidates]
    if not roots:
        return None
    return max(roots, key=_closeness)


def _closeness(c: Candidate) -> tuple[int, float, float]:
    """How near a failed candidate came: fewest failed rules (both statistics of one requirement
    count once), then its marker coverage (what a biologist checks first), then its score."""
    failed_rules = {(g.gate, g.marker or g.expression or g.statistic) for g in c.failed}
    coverage = [g.observed for g in c.gates if g.gate == "coverage"]
    return (-len(failed_rules), _sortable(coverage[0]) if coverage else -math.inf, _sortable(c.score))


def _near_miss(levels: list[LevelDecision], runner_up: str) -> NearMiss | None:
    """The deciding level is the last one; its runner-up is the best candidate that was not chosen."""
    if not levels:
        return None
    last = levels[-1]
    if last.outcome == "none_passed" or not last.passing:
        closest = max(last.candidates, key=_closeness, default=None)
        if closest is None:
            return None
        changes = [_gate_change(g) for g in closest.failed]
        what = "type" if last.level == 0 else "subtype"
        sentence = (f"No {what} passed at level {last.level}; the closest was {closest.cell_type}, which needs "
                    + " and ".join(changes) + ".")
        return NearMiss(closest.cell_type, "", last.level, math.nan, changes, sentence)
    leader = last.passing[0]
    others = [c for c in last.candidates if c is not leader]
    if not others:
        return None
    named = [c for c in others if c.cell_type == runner_up]
    rival = named[0] if named else others[0]
    margin = leader.score - rival.score
    # Each entry is one sufficient change (the options are alternatives).
    changes: list[str] = []
    if last.outcome == "ambiguous":
        where = f", set at {last.gap_loc}" if last.gap_loc else ""
        changes.append(f"min_gap <= {format_number(last.margin)} at level {last.level} (now {format_number(last.min_gap)}{where}; "
                       f"that would make {leader.cell_type} the label)")
    outscore = ""
    if not isnan(margin) and margin >= 0:
        need = margin + (0.0 if isnan(last.min_gap) else last.min_gap)
        outscore = f"a score {format_number(need)} higher ({format_number(rival.score)} vs {format_number(leader.score)})"
    if rival.failed:
        gates = " and ".join(_gate_change(g) for g in rival.failed)
        changes.append(gates + (f", plus {outscore} to win" if outscore else ""))
    elif outscore:
        changes.append(outscore + " to win")
    by = f" by {format_number(margin)}" if not isnan(margin) else ""
    sentence = f"{rival.cell_type} lost to {leader.cell_type}{by} at level {last.level}; needs " + " or ".join(changes) + "."
    return NearMiss(rival.cell_type, leader.cell_type, last.level, margin, changes, sentence)


def _gate_change(g: Step) -> str:
    """The smallest change that flips a failed gate: the observed value reaching the threshold, or
    the threshold moving to the observed value."""
    where = g.location or g.layer or "default"
    if isnan(g.observed):
        return f"{g.marker or measure(g)} to be present in the panel ({g.gate} at {where})"
    data_side = f"{measure(g)} {g.comparison} {format_number(g.threshold)} (is {format_number(g.observed)})"
    param = parameter_name(g)
    if param:
        name, _, scope = param.partition(" ")
        return f"{data_side}, i.e. {name} {_loosen(g.comparison)} {format_number(g.observed)}{' ' + scope if scope else ''}"
    return f"{data_side}, a threshold set at {where}"


def _loosen(op: str) -> str:
    return {">=": "<=", ">": "<", "<=": ">=", "<": ">"}.get(op, op)


def _votes(row: pd.Series, trace: pd.DataFrame) -> dict[str, float]:
    """The per-cell vote shares: the cluster's vote_composition ("A:0.62;B:0.30"), else its vote row."""
    text = str(row.get("vote_composition", "") or "")
    if text and text != "nan":
        pairs = (part.rsplit(":", 1) for part in text.split(";") if ":" in part)
        return {name: float(share) for name, share in pairs}
    votes = trace.loc[trace["kind"] == "vote"]
    return vote_shares(Step.from_record(votes.iloc[-1].to_dict())) if len(votes) else {}


def _states(run: RunDir, cluster: str) -> list[StateCall]:
    """The states whose scope holds the cluster's label, with their gate rows."""
    if run.states.empty:
        return []
    rows = run.states.loc[(run.states["cluster"].astype(str) == cluster) & run.states["applies"].astype(str).str.lower().eq("true")]
    trace = run.state_trace
    out = []
    for _, r in rows.iterrows():
        mine = trace.loc[(trace["cluster"].astype(str) == cluster) & (trace["cell_type"] == r["state"])] if not trace.empty else trace
        out.append(StateCall(str(r["state"]), str(r["called"]).lower() == "true", steps_of(mine)))
    return out


def _refinement(run: RunDir, row: pd.Series) -> list[str]:
    lines = []
    action = str(row.get("refinement_action", "") or "")
    if action and action != "nan":
        lines.append(f"refinement action: {action}")
    log = run.refinement
    if not log.empty and "cluster" in log.columns:
        for rec in log.loc[log["cluster"].astype(str) == str(row["cluster"])].to_dict("records"):
            lines.append(_refinement_line(rec))
    return lines


def _refinement_line(rec: dict) -> str:
    """'iteration 1 (auto): relabel Epithelium -> Ciliated Epithelium: <reason>'."""
    value = {k: str(v) for k, v in rec.items() if str(v) not in ("", "nan", "None")}
    text = f"iteration {value['iteration']}" if "iteration" in value else "refinement"
    text += f" ({value['source']}): " if "source" in value else ": "
    text += value.get("action", "refinement")
    before, after = value.get("before_label", value.get("before")), value.get("after_label", value.get("after"))
    if (before or after) and before != after:
        text += f" {before or '?'} -> {after or '?'}"
    if "reason" in value:
        text += f": {value['reason']}"
    extra: list[str] = []
    return text + (f" [{'; '.join(extra)}]" if extra else "")


def _summary(e: ClusterExplanation) -> str:
    cells = f" ({e.n_cells} cells)" if e.n_cells is not None else ""
    why = STOP_REASONS.get(e.stop_reason, e.stop_reason.replace("_", " "))
    conf = "uncontested" if e.confidence == math.inf else format_number(e.confidence)
    text = f"Cluster {e.cluster}{cells} is {e.label}: {why} (confidence {conf})."
    if e.closest is not None and e.closest.failed:
        text += f" Closest top-level type: {e.closest.cell_type}, failed {', '.join(measure(g) for g in e.closest.failed)}."
    return text


# --- rendering -------------------------------------------------------------------------------------


def level_heading(d: LevelDecision) -> str:
    where = "top-level types" if d.level == 0 else f"subtypes of {d.parent.split(PATH_SEP)[-1]}"
    return f"Level {d.level} ({where})"


def outcome_sentence(d: LevelDecision) -> str:
    ranked = ", ".join(f"{c.cell_type} {format_number(c.score)}" for c in d.passing) or "none"
    gap = f"min_gap {format_number(d.min_gap)}" + (f" from {d.gap_loc}" if d.gap_loc else "")
    if d.outcome == "winner":
        if d.settled_by:  # scores within min_gap, the tie settled by the evidence
            return (f"{d.chosen} chosen: margin {format_number(d.margin)} < {gap}, but its {d.settled_by}; "
                    f"passing: {ranked}")
        margin = "uncontested" if d.margin == math.inf else f"margin {format_number(d.margin)} >= {gap}"
        return f"{d.chosen} chosen ({margin}); passing: {ranked}"
    if d.outcome == "ambiguous":
        return f"too close to call: {ranked}; margin {format_number(d.margin)} < {gap}"
    if d.outcome == "none_passed":
        return "no candidate passed its gates"
    if d.outcome == "leaf":
        return f"{d.chosen} has no subtypes"
    return f"passing: {ranked}"


def render_text(e: ClusterExplanation) -> str:
    lines = [e.summary]
    if e.path:
        lines.append(f"  path: {' > '.join(e.path)}")
    for d in e.levels:
        lines.append(f"  {level_heading(d)}: {outcome_sentence(d)}")
        for c in d.candidates:
            mark = "passed" if c.passed else "failed"
            lines.append(f"    - {c.cell_type} (score {format_number(c.score)}) {mark}")
            for g in c.shown:
                lines.append(f"        {describe(g)}{e.split_note(g)}")
    if e.near_miss:
        lines.append(f"  near miss: {e.near_miss.sentence}")
    if e.votes:
        lines.append("  per-cell votes: " + ", ".join(f"{k} {v:.0%}" for k, v in e.votes.items()))
    for r in e.refinement:
        lines.append(f"  {r}")
    for st in e.states:
        lines.append(f"  state {st.state}: {'called' if st.called else 'not called'}")
        lines += [f"        {describe(g)}" for g in st.gates]
    return "\n".join(lines)


def render_markdown(e: ClusterExplanation) -> str:
    lines = [f"## Cluster {e.cluster}: {e.label}", "", e.summary, ""]
    if e.path:
        lines += [f"**Path:** {' > '.join(e.path)}", ""]
    for d in e.levels:
        lines += [f"### {level_heading(d)}", "", outcome_sentence(d), "",
                  "| cell type | score | result | failed gates |", "|---|---|---|---|"]
        for c in d.candidates:
            failed = "<br>".join((describe(g) + e.split_note(g)).replace("|", "\\|") for g in c.shown) or ""
            lines.append(f"| {c.cell_type} | {format_number(c.score)} | {'passed' if c.passed else 'failed'} | {failed} |")
        lines.append("")
    if e.near_miss:
        lines += [f"**Near miss:** {e.near_miss.sentence}", ""]
    if e.votes:
        lines += ["**Per-cell votes:** " + ", ".join(f"{k} {v:.0%}" for k, v in e.votes.items()), ""]
    for r in e.refinement:
        lines.append(f"- {r}")
    if e.states:
        lines += ["", "**Cell states:**", ""]
        for st in e.states:
            gates = "; ".join(describe(g) for g in st.gates)
            lines.append(f"- {st.state}: {'called' if st.called else 'not called'} ({gates})")
    return "\n".join(lines).rstrip()


# --- small numeric helpers ------------------------------------------------------------------------


def _sortable(value: float) -> float:
    return -math.inf if isnan(value) else value


def json_ready(obj):
    """``obj`` for ``json.dumps`` in the views' JSON output: NaN -> null, infinities -> "inf"/"-inf"."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else str(obj)
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    return obj
