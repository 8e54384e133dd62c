"""Accuracy of a run against reference labels: pure functions over per-cell arrays.

Every cell is judged once, in the ruleset's label space. A reference (truth) label is turned into
one or more ruleset nodes (a *target*) by a mapping, or by its name; the predicted label is the
run's path, optionally cut at a depth. Outcomes per cell:

- ``correct``: the predicted path contains a target node (the label is the target or below it);
- ``ancestor``: the prediction stopped above the target (its path is a prefix of the target's);
- ``wrong``: any other label;
- ``unassigned``: ``Unassigned``; ``ambiguous``: an ambiguous root (``A~B``).

Accuracy is the share of ``correct``; ancestors, unassigned and ambiguous cells are counted
apart but are not correct. Reference labels that match no node can never be correct; reference
labels mapped to nothing on purpose (``null`` in the mapping) are left out of every figure.

The cluster oracle gives every cluster the one node that makes most of its cells correct (in
practice its majority target): the best any cluster-level annotation could reach with these
clusters and this label space.

Reading the mapping file and run directories lives at the edge, :mod:`ctr.evaluation_io`.
"""

from __future__ import annotations

import re

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ctr.codes import UNKNOWN_MAPPED_TYPE, UNMATCHED_TRUTH, UNUSED_MAPPING_KEY
from ctr.diagnostics import Diagnostic, SourceLoc, did_you_mean
from ctr.errors import InputError, ParameterError


PATH_SEP = " / "
UNASSIGNED = "Unassigned"
AMBIGUITY_SEP = "~"
MISSING = "\x00missing"  # stands for a cell without a reference label (never a real label)
OUTCOMES = ("correct", "ancestor", "wrong", "unassigned", "ambiguous")

Path_ = tuple[str, ...]

# columns of evaluation.csv (documented in docs/outputs.md)
TABLE_COLUMNS = [
    "kind", "name", "value", "n_cells", "n_predicted", "correct", "ancestor", "wrong", "unassigned", "ambiguous",
    "precision", "recall", "f1", "oracle", "truth_labels", "ruleset_node",
]
OVERALL_METRICS = (
    "accuracy", "macro_f1", "cluster_oracle", "oracle_gap", "hierarchical_agreement", "ancestor_share",
    "wrong_share", "unassigned_share", "ambiguous_share", "n_cells", "n_excluded", "level",
)


@dataclass(frozen=True)
class Target:
    """What a reference label means in the ruleset: acceptable node paths (empty: none)."""

    name: str  # the class shown in tables: the node name(s), or the reference label when unmatched
    nodes: tuple[Path_, ...]

    @property
    def matched(self) -> bool:
        return bool(self.nodes)


@dataclass
class LabelMapping:
    """Reference label -> ruleset nodes, as read from a mapping file (``None``: leave the label out)."""

    targets: dict[str, tuple[Path_, ...] | None]
    source: str = "<mapping>"
    locs: dict[str, SourceLoc] = field(default_factory=dict)


@dataclass
class Evaluation:
    """The figures of one evaluation. Tables are pandas frames; ``overall`` holds the headline numbers."""

    overall: dict[str, float]
    per_class: pd.DataFrame  # one row per target class
    confusion: pd.DataFrame  # long: truth (class), predicted (label at the compared depth), n_cells
    outcomes: pd.Series  # per cell: correct | ancestor | wrong | unassigned | ambiguous | excluded
    unmatched_truth: list[str] = field(default_factory=list)
    unused_mapping_keys: list[str] = field(default_factory=list)
    level: int | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """``evaluation.csv``: the overall rows, then one row per class (columns :data:`TABLE_COLUMNS`)."""
        overall = pd.DataFrame(
            [{"kind": "overall", "name": k, "value": self.overall[k]} for k in OVERALL_METRICS if k in self.overall]
        )
        classes = self.per_class.assign(kind="class")
        return pd.concat([overall, classes], ignore_index=True).reindex(columns=TABLE_COLUMNS)

    def confusion_matrix(self) -> pd.DataFrame:
        """Wide confusion matrix: rows are reference classes, columns predicted labels (cell counts)."""
        if self.confusion.empty:
            return pd.DataFrame()
        wide = self.confusion.pivot_table(index="truth", columns="predicted", values="n_cells", aggfunc="sum",
                                          fill_value=0)
        rows = [c for c in self.per_class["name"] if c in wide.index]
        return wide.reindex(index=rows).astype(int)


# --- label space ---------------------------------------------------------------------------------


def split_label_path(path: str) -> Path_:
    """``"A / B"`` -> ``("A", "B")``; empty text -> ``()``."""
    text = str(path).strip()
    return tuple(p.strip() for p in text.split(PATH_SEP.strip())) if text else ()


def node_index(nodes: Sequence[Path_]) -> dict[str, list[Path_]]:
    """Lookup keys of every node: its name, its path, both also lower-cased."""
    index: dict[str, list[Path_]] = {}
    for path in nodes:
        for key in (path[-1], PATH_SEP.join(path)):
            for k in (key, key.lower()):
                if path not in index.setdefault(k, []):
                    index[k].append(path)
    return index


def resolve_name(name: str, index: Mapping[str, list[Path_]]) -> tuple[Path_, ...]:
    """The nodes a name or a path means: exact first, then case-insensitively; ``()`` when none."""
    text = PATH_SEP.join(split_label_path(name))
    return tuple(index.get(text) or index.get(text.lower()) or ())


def _type_named_in(label: str, names: Sequence[str]) -> str:
    """A ' (did you mean X?)' suffix for a reference label: the closest spelling, unless a cell type
    whose every word the label contains shares more of its words ('CD34+CD38lo HSCs' -> 'HSCs', not
    the closer-spelt 'CD123+ HSPCs'); nothing when they share no word but 'cells'."""
    def words_of(text: str) -> set[str]:
        return set(re.split(r"[\s_/-]+", text.lower())) - {""}

    words = words_of(label)
    spelt = did_you_mean(label, names)
    candidates = [spelt.split("'")[1]] if spelt else []
    candidates += [n for n in names if words_of(n) <= words]
    if not candidates:
        return ""
    best = max(candidates, key=lambda n: len(words_of(n) & words))  # the spelling wins a tie
    if not words_of(best) & words - {"cell", "cells"}:
        return ""  # close in spelling only ('tumor cells' / 'T Cells'): another population
    return f" (did you mean '{best}'?)"


def targets_for(truth_labels: Sequence[str], nodes: Sequence[Path_],
                mapping: LabelMapping | None = None) -> tuple[dict[str, Target | None], list[Diagnostic]]:
    """Each reference label's target. Labels the mapping leaves out get ``None``; labels the mapping
    does not name are matched by name. Raises ParameterError when the mapping names a cell type the
    ruleset does not have."""
    index = node_index(nodes)
    diagnostics: list[Diagnostic] = []
    errors: list[Diagnostic] = []
    names = sorted({p[-1] for p in nodes})
    out: dict[str, Target | None] = {}
    if mapping is not None:
        for label, values in mapping.targets.items():
            for value in values or ():
                if not resolve_name(PATH_SEP.join(value), index):
                    text = PATH_SEP.join(value)
                    errors.append(Diagnostic(
                        UNKNOWN_MAPPED_TYPE, f"'{label}' is mapped to '{text}', which is not a cell type of the ruleset"
                        f"{did_you_mean(value[-1], names)}", loc=mapping.locs.get(label),
                        hint=f"cell types: {', '.join(names[:20])}{' ...' if len(names) > 20 else ''}"))
        if errors:
            raise ParameterError(f"{mapping.source}: {len(errors)} mapping entr{'y' if len(errors) == 1 else 'ies'} "
                                 "name unknown cell types", diagnostics=errors)
    for label in truth_labels:
        if label == MISSING:
            out[label] = None
            continue
        if mapping is not None and label in mapping.targets:
            values = mapping.targets[label]
            if values is None:
                out[label] = None
                continue
            found = tuple(dict.fromkeys(p for v in values for p in resolve_name(PATH_SEP.join(v), index)))
        else:
            found = resolve_name(label, index)
        name = " | ".join(dict.fromkeys(p[-1] for p in found)) if found else str(label)
        out[label] = Target(name=name, nodes=found)
    unmatched = [label for label, t in out.items() if t is not None and not t.matched]
    if unmatched:
        listed = ", ".join(f"'{label}'{_type_named_in(str(label), names)}" for label in unmatched)
        diagnostics.append(Diagnostic(
            UNMATCHED_TRUTH, f"{len(unmatched)} reference label{'s' * (len(unmatched) != 1)} match no cell type of the "
            f"ruleset; their cells count as wrong: {listed}",
            hint="map them in a --mapping file (to a cell type, a list of them, or null to leave them out)"))
    if mapping is not None:
        present = set(truth_labels)
        for key in mapping.targets:
            if key not in present:
                diagnostics.append(Diagnostic(UNUSED_MAPPING_KEY, f"'{key}' is not a reference label of this data",
                                              loc=mapping.locs.get(key)))
    return out, diagnostics


def cut(path: Path_, level: int | None) -> Path_:
    """The path at depth ``level`` (0 = roots); unchanged when ``level`` is None."""
    return path if level is None else path[: level + 1]


def credited(predicted: Path_, target_nodes: Sequence[Path_]) -> bool:
    """True when the predicted path passes through one of the target nodes."""
    return any(predicted[: len(t)] == t for t in target_nodes)


def outcome_of(predicted: Path_, label: str, target: Target, level: int | None) -> str:
    if label == UNASSIGNED or not predicted:
        return "unassigned"
    if AMBIGUITY_SEP in predicted[0]:
        return "ambiguous"
    nodes = [cut(t, level) for t in target.nodes]
    if credited(predicted, nodes):
        return "correct"
    if any(t[: len(predicted)] == predicted for t in nodes):
        return "ancestor"
    return "wrong"


# --- the evaluation ------------------------------------------------------------------------------


def evaluate_labels(
    truth: Sequence[str],
    predicted_label: Sequence[str],
    predicted_path: Sequence[str],
    clusters: Sequence[str],
    nodes: Sequence[Path_],
    *,
    mapping: LabelMapping | None = None,
    level: int | None = None,
) -> Evaluation:
    """Judge every cell's predicted label against its reference label.

    ``predicted_path`` is the run's per-cell path (``"Root / Child"``, ``"A~B"``, ``"Unassigned"``);
    ``clusters`` the cluster of each cell (for the oracle); ``nodes`` the ruleset's node paths.
    ``level`` compares at that depth (0 = roots): both the prediction and the target are cut there.
    Cells without a reference label (NaN, empty) are left out, as are labels mapped to None.
    """
    if level is not None and level < 0:
        raise ParameterError(f"--level must be 0 (roots) or more, got {level}")
    truth = pd.Series(np.asarray(truth, dtype=object))
    # a cell without a reference label (NaN, None, empty) has nothing to be judged against: left out
    truth = truth.where(truth.notna() & (truth.astype(str).str.strip() != ""), MISSING)
    frame = pd.DataFrame({
        "truth": truth.astype(str).to_numpy(),
        "label": np.asarray(predicted_label, dtype=object).astype(str),
        "path": np.asarray(predicted_path, dtype=object).astype(str),
        "cluster": np.asarray(clusters, dtype=object).astype(str),
    })
    n = len(frame)
    if not (len(predicted_label) == len(predicted_path) == len(clusters) == n):
        raise InputError(f"truth, predictions and clusters differ in length ({n}, {len(predicted_label)}, "
                         f"{len(predicted_path)}, {len(clusters)} cells)")
    truth_labels = list(pd.unique(frame["truth"]))
    targets, diagnostics = targets_for(truth_labels, nodes, mapping)

    # judge each distinct (truth, prediction) once: a handful of combinations for any number of cells
    combos = frame.groupby(["truth", "label", "path"], sort=False, observed=True).size().rename("n").reset_index()
    combos["pred"] = [cut(split_label_path(p) if lab != UNASSIGNED else (), level)
                      for lab, p in zip(combos["label"], combos["path"])]
    combos["target"] = combos["truth"].map(targets)
    combos["excluded"] = combos["target"].isna()
    kept = combos.loc[~combos["excluded"]].copy()
    kept["outcome"] = [outcome_of(p, lab, t, level) for p, lab, t in zip(kept["pred"], kept["label"], kept["target"])]
    kept["class"] = [t.name for t in kept["target"]]
    kept["predicted"] = [_display(p, lab) for p, lab in zip(kept["pred"], kept["label"])]

    outcome_by_combo = dict(zip(zip(kept["truth"], kept["label"], kept["path"]), kept["outcome"]))
    outcomes = pd.Series([outcome_by_combo.get(k, "excluded") for k in zip(frame["truth"], frame["label"], frame["path"])],
                         index=frame.index, name="outcome")
    n_eval = int(kept["n"].sum())
    counts = kept.groupby("outcome")["n"].sum().reindex(OUTCOMES, fill_value=0)

    classes = _class_targets(targets)
    per_class = _per_class(kept, classes, level)
    oracle_by_class, oracle_correct = _oracle(frame.assign(outcome=outcomes), targets, classes, level)
    per_class["oracle"] = [oracle_by_class.get(c, 0) / max(n_c, 1) for c, n_c in zip(per_class["name"], per_class["n_cells"])]

    share = (lambda k: float(counts[k]) / n_eval) if n_eval else (lambda k: float("nan"))
    accuracy = share("correct")
    oracle = oracle_correct / n_eval if n_eval else float("nan")
    overall = {
        "accuracy": accuracy,
        "macro_f1": float(per_class["f1"].mean()) if len(per_class) else float("nan"),
        "cluster_oracle": oracle,
        "oracle_gap": oracle - accuracy,
        "hierarchical_agreement": share("correct") + share("ancestor"),
        "ancestor_share": share("ancestor"),
        "wrong_share": share("wrong"),
        "unassigned_share": share("unassigned"),
        "ambiguous_share": share("ambiguous"),
        "n_cells": float(n_eval),
        "n_excluded": float(n - n_eval),
        "level": float("nan") if level is None else float(level),
    }
    confusion = (kept.groupby(["class", "predicted"], sort=False)["n"].sum().reset_index()
                 .rename(columns={"class": "truth", "n": "n_cells"}))
    order = {c: i for i, c in enumerate(per_class["name"])}
    confusion = confusion.sort_values(["truth", "n_cells"], key=lambda s: s.map(order) if s.name == "truth" else -s,
                                      kind="stable").reset_index(drop=True)
    return Evaluation(
        overall=overall,
        per_class=per_class,
        confusion=confusion,
        outcomes=outcomes,
        unmatched_truth=sorted(lab for lab, t in targets.items() if t is not None and not t.matched),
        unused_mapping_keys=[k for k in (mapping.targets if mapping else {}) if k not in targets],
        level=level,
        diagnostics=diagnostics,
    )


def _display(pred: Path_, label: str) -> str:
    if label == UNASSIGNED or not pred:
        return UNASSIGNED
    return pred[-1]


def _class_targets(targets: Mapping[str, Target | None]) -> dict[str, tuple[Target, list[str]]]:
    """Class name -> (its target, the reference labels that map to it), in first-seen order."""
    classes: dict[str, tuple[Target, list[str]]] = {}
    for label, target in targets.items():
        if target is None:
            continue
        classes.setdefault(target.name, (target, []))[1].append(label)
    return classes


def _per_class(kept: pd.DataFrame, classes: dict[str, tuple[Target, list[str]]], level: int | None) -> pd.DataFrame:
    """Support, outcomes, precision, recall and F1 per class.

    Precision: of the cells whose predicted path passes through the class's node(s), the share
    whose reference is that class (a prediction can credit a coarse and a fine class at once).
    """
    rows = []
    for name, (target, labels) in classes.items():
        mine = kept.loc[kept["class"] == name]
        by_outcome = mine.groupby("outcome")["n"].sum().reindex(OUTCOMES, fill_value=0)
        support = int(mine["n"].sum())
        nodes = [cut(t, level) for t in target.nodes]
        claims = kept.loc[[bool(nodes) and credited(p, nodes) and o not in ("unassigned", "ambiguous")
                           for p, o in zip(kept["pred"], kept["outcome"])], "n"].sum()
        correct = int(by_outcome["correct"])
        precision = correct / claims if claims else 0.0
        recall = correct / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({
            "name": name, "n_cells": support, "n_predicted": int(claims),
            **{k: int(by_outcome[k]) for k in OUTCOMES},
            "precision": precision, "recall": recall, "f1": f1,
            "truth_labels": "; ".join(labels), "ruleset_node": "; ".join(PATH_SEP.join(t) for t in target.nodes),
        })
    columns = ["name", "n_cells", "n_predicted", *OUTCOMES, "precision", "recall", "f1", "truth_labels", "ruleset_node"]
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values("n_cells", ascending=False, kind="stable").reset_index(drop=True)


def _oracle(frame: pd.DataFrame, targets: Mapping[str, Target | None], classes, level: int | None):
    """Cells each class gets right, and in all, when every cluster takes its best single node."""
    kept = frame.loc[frame["outcome"] != "excluded"]
    per_class: dict[str, int] = {}
    total = 0
    counts = kept.groupby(["cluster", "truth"], sort=False, observed=True).size()
    for _, group in counts.groupby(level="cluster", sort=False):
        labels = group.index.get_level_values("truth")
        candidates = {cut(t, level) for lab in labels if targets[lab] is not None for t in targets[lab].nodes}
        best, best_hits = 0, {}
        for node in sorted(candidates):
            hits = {lab: int(k) for lab, k in zip(labels, group.to_numpy())
                    if credited(node, [cut(t, level) for t in targets[lab].nodes])}
            if sum(hits.values()) > best:
                best, best_hits = sum(hits.values()), hits
        total += best
        for lab, k in best_hits.items():
            name = targets[lab].name
            per_class[name] = per_class.get(name, 0) + k
    return per_class, total


def ruleset_nodes(ruleset) -> list[Path_]:
    """Every node path of a :class:`~ctr.rules.model.Ruleset`."""
    return [tuple(ct.path) for ct in ruleset.walk()]
