"""Trace rows in words: the one place where a decision step becomes a sentence.

The engine records values (``ctr.engine.trace.Step``: the gate, the marker and statistic, the
observed value, the comparison, the threshold and the parameter key, layer and file location
that set it). The ``reason`` column of decision_steps.csv and gating_details.csv, ``ctr explain``,
the HTML report and ``ctr diff`` all word those values here.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict

import pandas as pd

from ctr.engine.trace import Step, isnan
from ctr.rules.model import PATH_SEP

# the layers as a reader knows them
LAYER_NAMES = {"cli": "the command line", "preset": "the preset", "tissue": "the tissue profile",
               "ruleset": "the ruleset", "default": "the built-in defaults", "plan": "the refinement plan"}


# ---- numbers ---------------------------------------------------------------------------------


def fmt(value: float, digits: int = 2) -> str:
    """A number in a sentence: fixed decimals; 'inf'; 'missing' for NaN."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "missing"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def fmt_pair(a: float, b: float) -> tuple[str, str]:
    """Two numbers compared in a sentence, with enough decimals that unequal values look unequal."""
    for digits in (2, 3, 4, 6):
        fa, fb = fmt(a, digits), fmt(b, digits)
        if fa != fb or a == b:
            return fa, fb
    return fmt(a, 6), fmt(b, 6)


def _number(value) -> str:
    """A value inside a condition: integers plain, else as :func:`fmt`."""
    if value is None:
        return "missing"
    if isinstance(value, bool):
        return str(value).lower()
    if math.isfinite(value) and float(value).is_integer() and abs(value) < 1e9:
        return str(int(value))
    return fmt(value)


def _names(text: str) -> list[str]:
    return [n for n in text.split(";") if n] if text else []


def _failing(op: str) -> str:
    return {">=": "<", ">": "<=", "<=": ">", "<": ">=", "==": "!=", "!=": "=="}.get(op, op)


# ---- where a threshold came from -------------------------------------------------------------


def parameter_name(step: Step) -> str | None:
    """The parameter a user changes to move this threshold, in words ('min_coverage at level 0',
    'min_coverage for Lymphatics', 'anti_penalty_hard_gate'); None for a number written in a rule."""
    key = step.param_key
    if not key or step.layer == "plan":
        return None
    name = key.rsplit(".", 1)[1]
    if key.startswith("gating.level_defaults."):
        return f"{name} at level {step.level}"
    if key.startswith("gating.nodes."):
        return f"{name} for {key[len('gating.nodes.'):].rsplit('.', 1)[0]}"
    return name


def where(step: Step) -> str:
    """``file:line:col`` of what set the threshold, with the ruleset's checksum when the file was
    cited from the copy an earlier run stored ('' when no file set it)."""
    if not step.location:
        return ""
    return step.location + (f" (stored copy, sha256 {step.file_sha256[:12]})" if step.file_sha256 else "")


def cite(step: Step) -> str:
    """' (rule file:line:col)' when a file set the threshold, else ' (<parameter key>, <layer>)'."""
    if step.location:
        return f" (rule {where(step)})"
    return f" ({step.param_key or step.gate}, {step.layer or 'default'})"


def kept(step: Step) -> str:
    """'; Lymphatics' own rule kept 1.00 over gating.level_defaults.0.min_coverage = 0.35 from the
    command line' when a more specific rule kept a value a later, wider layer set; else ''."""
    if not step.shadowed_key:
        return ""
    owner = f"{step.cell_type}'" if step.cell_type.endswith("s") else f"{step.cell_type}'s"
    whose = {"marker": "the marker's own rule", "node": f"{owner} own rule"}.get(step.scope, "a narrower rule")
    return (f"; {whose} kept {fmt(step.threshold)} over {step.shadowed_key} = {fmt(step.shadowed_value)} "
            f"from {LAYER_NAMES.get(step.shadowed_layer, step.shadowed_layer)}")


# ---- one gate --------------------------------------------------------------------------------


def measure(step: Step) -> str:
    """What a gate measured, in words: 'EPCAM pos_frac', 'coverage', 'condition `...`'."""
    if step.gate in ("requirement", "veto"):
        return f"{step.marker} {step.statistic}".strip()
    if step.gate == "condition":
        return f"condition `{step.expression}`"
    return {"anti_conflict": "anti-marker penalty", "enrichment": "mean enrichment"}.get(step.gate, step.gate.replace("_", " "))


def gate_reason(step: Step) -> str:
    """One sentence for a gate row, as the reason column of decision_steps.csv."""
    a, b = fmt_pair(step.observed, step.threshold)
    ok = step.passed
    holds = step.comparison if ok else _failing(step.comparison)
    where = cite(step) + kept(step)
    absent = _names(step.absent)
    if step.gate == "requirement":
        if step.marker in absent:
            return f"marker {step.marker} is not in the panel, so the requirement fails{where}"
        if isnan(step.observed):
            return f"{step.marker} has no {step.statistic} in this cluster (every value missing), so the requirement fails{where}"
        return f"{step.marker} {step.statistic} {a} {holds} {b} required{where}"
    if step.gate == "veto":
        if step.marker in absent:
            return f"marker {step.marker} is not in the panel, so its veto is not applied{where}"
        if isnan(step.observed):
            return f"{step.marker} has no values in this cluster, so its veto is not applied{where}"
        return f"{step.marker} pos_frac {a} {holds} {b}: {'not vetoed' if ok else 'vetoed'}{where}"
    if step.gate == "panel":
        listed = int(step.n_markers) if not isnan(step.n_markers) else 0
        missing = f" (not in the panel: {', '.join(absent)})" if absent else ""
        return (f"{int(step.observed)} of {listed} positive marker{'s' * (listed != 1)} measured on this panel, "
                f"{int(step.threshold)} needed to judge {step.cell_type}{missing}{where}")
    if step.gate == "coverage":
        on = _names(step.markers)
        measured = int(step.n_markers) if not isnan(step.n_markers) else len(on)
        missing = f"; not in the panel: {', '.join(absent)}" if absent else ""
        shown = f" ({', '.join(on)})" if on else ""
        noun = "measured marker" if measured == 1 else "measured markers"
        subtypes = _names(step.candidates)
        if subtypes:  # passed below its threshold: a subtype passed every gate (gating.coverage_from_subtypes)
            which = ", ".join(subtypes)
            return (f"coverage {a} {_failing(step.comparison)} {b}: {len(on)} of {measured} {noun} on{shown}{missing}, "
                    f"but its subtype{'s' * (len(subtypes) != 1)} {which} passed every gate, which covers "
                    f"{step.cell_type} (coverage_from_subtypes){where}")
        return f"coverage {a} {holds} {b}: {len(on)} of {measured} {noun} on{shown}{missing}{where}"
    if step.gate == "enrichment":
        n = int(step.n_markers) if not isnan(step.n_markers) else 0
        over = f"over {n} resolved marker{'s' * (n != 1)}" if n else "(no marker of this type is in the panel)"
        return f"mean enrichment {a} {holds} {b} {over}{where}"
    if step.gate == "condition":
        explained = condition_words(json.loads(step.values)) if step.values else ""
        return f"condition `{step.expression}` {'holds' if ok else 'fails'}: {explained}{where}"
    if step.gate == "anti_conflict":
        anti = ", ".join(_names(step.markers)) or "no anti-marker in the panel"
        verdict = f"<= {b} allowed" if ok else f"> {b} allowed: the anti-markers conflict"
        return f"anti-marker penalty {a} {verdict} ({anti}){where}"
    return f"{measure(step)} {a} {holds} {b}{where}"


def describe(step: Step) -> str:
    """A gate as ``ctr explain`` lists it: 'coverage: 0.40 >= 0.50 FAILED (rule ft.ctr:2:11, ...)'."""
    outcome = "passed" if step.passed else "FAILED"
    absent = step.marker in _names(step.absent) if step.marker else False
    value = "missing from panel" if absent or isnan(step.observed) else format_number(step.observed)
    what = f"{step.gate} {measure(step)}" if step.gate in ("requirement", "veto") else measure(step)
    rule = where(step) or step.layer or "default"
    subtypes = _names(step.candidates) if step.gate == "coverage" else []
    if subtypes:  # below its threshold, carried by a subtype that passed every gate
        outcome = f"passed through subtype {', '.join(subtypes)}"
        return (f"{what}: {value} {_failing(step.comparison)} {format_number(step.threshold)} {outcome}"
                f" (rule {rule}, threshold from {step.layer or 'default'}{kept(step)}; coverage_from_subtypes)")
    return (f"{what}: {value} {step.comparison} {format_number(step.threshold)} {outcome}"
            f" (rule {rule}, threshold from {step.layer or 'default'}{kept(step)})")


def format_number(value: float) -> str:
    """A number as the views show it: two decimals, 'inf', 'n/a' for a missing value."""
    if value is None or isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.2f}"


def condition_words(tree: dict) -> str:
    """Why a condition has its truth value, naming the parts that decided it (the evaluation tree
    the engine records for a ``when`` gate)."""
    kind = tree.get("kind")
    if kind == "compare":
        left, right = tree["parts"]
        text = f"{_shown(left)} {tree['op']} {_shown(right)} is {'true' if tree['value'] else 'false'}"
        if tree.get("missing"):
            text += f" (marker {', '.join(tree['missing'])} missing: comparisons with a missing marker are false)"
        return text
    if kind == "not":
        return f"not ({condition_words(tree['parts'][0])})"
    if kind in ("and", "or", "all", "any", "at_least"):
        decisive = [p for p in tree["parts"] if bool(p["value"]) == bool(tree["value"])]
        parts = "; ".join(condition_words(p) for p in decisive)
        if kind == "at_least":
            n_true = sum(bool(p["value"]) for p in tree["parts"])
            return f"{n_true} of {len(tree['parts'])} true, at least {tree['k']} needed: {parts}"
        return parts
    return _shown(tree)


def _shown(tree: dict) -> str:
    """A numeric part with its value: ``pos_frac(PAX8)=0.41``; numbers as themselves."""
    if tree.get("kind") == "number":
        return tree["text"]
    return f"{tree['text']}={_number(tree['value'])}"


# ---- selections, votes, refinement ------------------------------------------------------------


def _parent_name(path: str) -> str:
    return path.split(PATH_SEP)[-1] if path else ""


# what each tie-break rule found better in the winner (ctr.engine.decide.break_tie)
TIE_RULES = {"coverage": "coverage is higher", "anti_penalty": "anti-marker penalty is lower",
             "distinct_coverage": "coverage on the markers that tell them apart (listed by no other candidate) is higher"}


def tie_break_clause(step: Step) -> str:
    """What settled a near-tie, from its ``tie_break`` row: 'coverage is higher by 0.33 (>= tie_coverage_gap 0.25)'."""
    a, b = fmt_pair(step.observed, step.threshold)
    what = TIE_RULES.get(step.statistic, f"{step.statistic} is better")
    return f"{what} by {a} (>= {step.param_key.rsplit('.', 1)[-1]} {b})"


def select_reason(step: Step, gates: list[Step]) -> str:
    """One sentence for a selection row; ``gates`` are the gate rows of the candidates it chose among."""
    if step.gate == "leaf":
        return f"{step.cell_type} has no subtypes: the descent ends here"
    what = "root" if not step.path else f"subtype of {_parent_name(step.path)}"
    ranked = _names(step.candidates)
    if step.gate == "none_passed":
        failed = "; ".join(
            f"{name} failed {', '.join(dict.fromkeys(g.gate for g in gates if g.cell_type == name and not g.passed))}"
            for name in ranked
        ) or "no candidates"
        result = "the cluster is Unassigned" if not step.path else f"the label stays {_parent_name(step.path)}"
        return f"no {what} passed its gates ({failed}): {result}"
    a, b = fmt_pair(step.observed, step.threshold)
    if step.gate == "tie_break":
        return (f"{step.cell_type} and {', '.join(ranked)} scored within min_gap, but {step.cell_type}'s "
                f"{tie_break_clause(step)}: the tie is settled for {step.cell_type}{cite(step)}")
    if step.gate == "winner":
        if len(ranked) == 1:
            others = [n for n in dict.fromkeys(g.cell_type for g in gates) if n != step.cell_type]
            tail = f" ({', '.join(others)} failed)" if others else ""
            return f"{step.cell_type} was the only {what} that passed{tail}: uncontested"
        return f"{step.cell_type} beat {ranked[1]} by {a} (min_gap {b})"
    names = step.cell_type.split("~")
    result = f"label {step.cell_type}" if not step.path else f"the label stays {_parent_name(step.path)}"
    return f"{ranked[0]} led {ranked[1]} by only {a} < min_gap {b}: {' and '.join(names)} are ambiguous, {result}"


def vote_shares(step: Step) -> dict[str, float]:
    """The per-cell vote shares a vote row recorded (candidate or Uncertain -> share)."""
    return {str(k): float(v) for k, v in json.loads(step.values).items()} if step.values else {}


def vote_reason(step: Step) -> str:
    shares = ", ".join(f"{name} {share:.2f}" for name, share in vote_shares(step).items())
    return (f"per-cell votes among {', '.join(_names(step.candidates))}: {shares} "
            "(evidence only; the label is unchanged)")


def refine_reason(step: Step) -> str:
    """One sentence for a refinement row (refinement_log.csv has the full story of each operation)."""
    source = "refinement plan" if step.layer == "plan" else "automatic refinement"
    if step.statistic in ("action", "plan"):
        target = f" to {step.cell_type}" if step.gate == "relabel" and step.cell_type else ""
        return f"{step.gate}{target} ({source})"
    a, b = fmt_pair(step.observed, step.threshold)
    holds = step.comparison if step.passed else _failing(step.comparison)
    of = f" of {step.cell_type}" if step.statistic in ("vote_share", "score") and step.cell_type else ""
    return f"{step.gate} check: {step.statistic}{of} {a} {holds} {b}{cite(step)}"


# ---- whole tables ----------------------------------------------------------------------------


def steps_of(trace: pd.DataFrame) -> list[Step]:
    return Step.from_frame(trace)


def reasons(trace: pd.DataFrame) -> list[str]:
    """A sentence for every row of ``trace`` (decision_steps), in row order."""
    steps = steps_of(trace)
    gates: dict[tuple, list[Step]] = defaultdict(list)
    for s in steps:
        if s.kind == "gate":
            parent = s.path.rsplit(PATH_SEP, 1)[0] if PATH_SEP in s.path else ""
            gates[(s.cluster, s.level, parent)].append(s)
    out = []
    for s in steps:
        if s.kind in ("gate", "state"):  # a cell state's gate rows read like a type's
            out.append(gate_reason(s))
        elif s.kind == "select":
            out.append(select_reason(s, gates.get((s.cluster, s.level, s.path), [])))
        elif s.kind == "vote":
            out.append(vote_reason(s))
        else:
            out.append(refine_reason(s))
    return out


def with_reasons(trace: pd.DataFrame) -> pd.DataFrame:
    """``trace`` with its ``reason`` column (the last)."""
    return trace.assign(reason=reasons(trace) if len(trace) else pd.Series(dtype=str))


def gating_with_reasons(gating: pd.DataFrame, trace: pd.DataFrame) -> pd.DataFrame:
    """``gating`` (gating_details) with a ``reason`` per row: its failed gates in words, joined by
    '; ', or 'passed all N gates'."""
    by_node: dict[tuple[str, str], list[Step]] = defaultdict(list)
    for s in steps_of(trace.loc[trace["kind"] == "gate"]) if len(trace) else []:
        by_node[(s.cluster, s.path)].append(s)
    text = []
    for cluster, path in zip(gating["cluster"].astype(str), gating["path"].astype(str)):
        rows = by_node.get((cluster, path), [])
        bad = [gate_reason(s) for s in rows if not s.passed]
        text.append("; ".join(bad) if bad else f"passed all {len(rows)} gates")
    return gating.assign(reason=text if len(gating) else pd.Series(dtype=str))


# ---- refinement_log.csv ----------------------------------------------------------------------


def _min_cells(d: dict) -> str:
    sample = d.get("sample")
    scaled = f" (not set: 500, or 5% of the sample's {sample} cells if fewer)" if sample is not None else ""
    return f"min_cells {d['min_cells']}{scaled}"


# the checks of the refinement policy that kept a cluster from a relabel or a split, in words
_CHECK_WORDS = {
    "no_subtype_votes": lambda c, h, n: f"no cell voted for a subtype of {c['parent']}",
    "vote_share_low": lambda c, h, n: (f"{c['subtype']} took only {c['vote_share']:.2f} of the votes "
                                       f"< {c['needed']:.2f} (1 - heterogeneity_gap)"),
    "score_low": lambda c, h, n: f"{c['subtype']} scored {c['score']:.2f} < subtype_signal_threshold {c['threshold']:.2f}",
    "no_subtypes": lambda c, h, n: f"{c['label']} has no subtypes to relabel to",
    "heterogeneity_low": lambda c, h, n: f"H {h:.2f} < score_threshold {c['threshold']:.2f}",
    "too_few_cells": lambda c, h, n: f"{n} cells < {_min_cells(c)}",
}


def _check_words(c: dict, h: float, n: int) -> str:
    """One check of the refinement policy in words (``h`` and ``n``: the row's heterogeneity and size)."""
    words = _CHECK_WORDS.get(c["check"])
    return words(c, h, n) if words else c["check"]


def _why_split(d: dict, h: float, n: int) -> str:
    """What triggered a split: the policy's heterogeneity and size checks, or the plan."""
    if d.get("trigger") == "plan":
        return f"manual subcluster ({d.get('note', '')})"
    checks = "; ".join(_check_words(c, h, n) for c in d.get("checks", []))
    return f"H {h:.2f} >= score_threshold {d['score_threshold']:.2f} and {n} cells >= {_min_cells(d)} ({checks})"


def refinement_reason(row: dict) -> str:
    """One refinement_log.csv row in words, from its ``reason_code`` and ``detail`` values."""
    code = row.get("reason_code", "")
    d = json.loads(row["detail"]) if isinstance(row.get("detail"), str) and row["detail"] else {}
    h, n = row.get("heterogeneity", math.nan), int(row.get("n_cells", 0) or 0)
    before, after = row.get("before_label", ""), row.get("after_label", "")
    if code == "relabel_votes":
        return (f"{d['subtype']} took {d['vote_share']:.2f} of the per-cell votes among the subtypes of {d['parent']} "
                f"(>= 1 - heterogeneity_gap {d['heterogeneity_gap']:.2f} = {d['needed_share']:.2f}) and scored "
                f"{row['after_score']:.2f} (>= subtype_signal_threshold {d['subtype_signal_threshold']:.2f}): "
                f"relabelled {before} -> {after} ({n} cells, H {h:.2f})")
    if code == "kept":
        checks = "; ".join(_check_words(c, h, n) for c in d["checks"])
        votes = d["votes"]
        shares = ", ".join(f"{name} {share:.2f}" for name, share in votes["shares"])
        return f"kept as is: {checks} (the votes over {', '.join(votes['candidates'])} ({shares}) give H {h:.2f})"
    if code == "single_piece":
        return f"{_why_split(d, h, n)}, but Leiden at resolution {d['resolution']:g} found a single piece: kept intact"
    if code == "split":
        leiden = f"Leiden at resolution {d['resolution']:g} split its {n} cells into {d['pieces']} pieces"
        outcome = "; ".join(f"{new} {label} ({size} cells)" for new, label, size in d["pools"])
        if len(d["pools"]) < d["pieces"]:
            return (f"{_why_split(d, h, n)}: {leiden}; the pieces that reached the same label were pooled, "
                    f"{d['pieces']} Leiden pieces into {len(d['pools'])}: {outcome}")
        return f"{_why_split(d, h, n)}: {leiden}, each reaching a label of its own: {outcome}"
    if code == "split_undone":
        return (f"{_why_split(d, h, n)}, but Leiden's {d['pieces']} pieces all reached {d['agreed']} "
                f"(resolution {d['resolution']:g}): the split would change no label, kept intact")
    if code == "piece":
        ps = d["leiden_pieces"]
        origin = f"pooled from Leiden pieces {', '.join(ps)}" if len(ps) > 1 else f"Leiden piece {ps[0]}"
        return (f"piece of cluster {d['parent']} ({before}): {n} cells, {origin}, scored and gated again "
                f"against the original global statistics")
    if code == "manual_override":
        return f"manual override: {before} -> {after} ({d.get('note', '')})"
    if code == "manual_merge":
        how = f"labelled {after}" if d["label_given"] else f"annotated again: {after}"
        return (f"manual merge of clusters {', '.join(d['clusters'])} into {d['into']} ({n} cells), {how} "
                f"({d.get('note', '')})")
    if code == "manual_relabel":
        return f"manual relabel: {before} -> {d['path']} (its score here {row['after_score']:.2f}) ({d.get('note', '')})"
    return str(code)


def refinement_reasons(log: pd.DataFrame) -> pd.DataFrame:
    """``log`` (the engine's refinement log) with its ``reason`` column, after ``action``."""
    out = log.copy()
    out.insert(list(out.columns).index("action") + 1 if "action" in out.columns else 0, "reason",
               [refinement_reason(r) for r in log.to_dict("records")])
    return out
