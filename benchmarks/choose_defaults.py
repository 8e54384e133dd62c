"""Choose ctr's default parameters by leave-one-set-out cross-validation (docs/accuracy.md).

Every candidate configuration in :data:`GRID` is run once over every (labelled set, ruleset)
pair of ``benchmarks/accuracy.py`` (annotation only). A candidate is installed as ctr's built-in
default for that run (:func:`as_defaults`), not passed as a command-line layer: a ruleset's own
settings (its level blocks, its types' thresholds) still win over it, exactly as they would over a
default we ship. Then, for
each labelled set in turn, the configuration with the best mean accuracy on the *other* sets is
chosen and its accuracy on the held-out set is reported: what a default chosen without that set
would have given on it. The default we ship is the configuration with the best mean accuracy
over all sets; the table says how often the folds agreed with it.

Usage::

    python benchmarks/choose_defaults.py [--sets a,b] [--csv OUT.csv] [--quick]

Prints the per-configuration table, the per-fold table and the choice. Takes minutes: every
configuration recomputes the statistics of every set.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import accuracy  # noqa: E402  (the harness beside this file)

# Each axis: a dotted parameter key and the values tried. The first value of every axis is the
# candidate default. Axes are crossed; configurations that differ only in a parameter that has no
# effect (a split parameter under positivity 'quantile') are run once.
GRID: dict[str, list] = {
    "scoring.positivity": ["auto", "quantile"],
    "scoring.enrichment_reference": ["negative", "median"],
    "scoring.split_separation": [2.0, 1.5],
    "scoring.split_tail_mads": [2.0, 3.0],
    "gating.level_defaults.0.min_coverage": [0.34, 0.5],
    "scoring.anti_agg": ["top_quarter", "top2mean", "mean"],
    "gating.coverage_from_subtypes": [True, False],
}
QUICK: dict[str, list] = {k: v for k, v in GRID.items()
                          if k not in ("scoring.anti_agg", "scoring.enrichment_reference", "gating.coverage_from_subtypes")}
_ONLY_WITH_AUTO = ("scoring.split_separation", "scoring.split_tail_mads")


@contextmanager
def as_defaults(config: dict[str, object]) -> Iterator[None]:
    """Install ``config`` (dotted keys) as ctr's built-in defaults while the block runs.

    Scoring and gating fields change their model's default; ``gating.level_defaults.L.key``
    changes the built-in level table. Everything is restored on exit.
    """
    from ctr.rules import params as P

    blocks = {"scoring": P.ScoringParams, "gating": P.GatingParams, "refinement": P.RefinementParams}
    saved_fields, saved_levels = [], {lvl: block.model_copy() for lvl, block in P.DEFAULT_LEVELS.items()}
    try:
        for key, value in config.items():
            parts = key.split(".")
            if parts[:2] == ["gating", "level_defaults"]:
                level, field = int(parts[2]), parts[3]
                P.DEFAULT_LEVELS[level] = P.DEFAULT_LEVELS[level].model_copy(update={field: value})
                continue
            model = blocks[parts[0]]
            saved_fields.append((model, parts[1], model.model_fields[parts[1]].default))
            model.model_fields[parts[1]].default = value
        for model in blocks.values():
            model.model_rebuild(force=True)
        yield
    finally:
        for model, field, default in saved_fields:
            model.model_fields[field].default = default
        P.DEFAULT_LEVELS.clear()
        P.DEFAULT_LEVELS.update(saved_levels)
        for model in blocks.values():
            model.model_rebuild(force=True)


def configurations(grid: dict[str, list]) -> list[dict[str, object]]:
    """Every combination of the grid's values, without the ones that cannot differ."""
    seen, out = set(), []
    for values in itertools.product(*grid.values()):
        config = dict(zip(grid, values))
        if config.get("scoring.positivity") == "quantile":
            for key in _ONLY_WITH_AUTO:
                if key in grid:
                    config[key] = grid[key][0]
        frozen = json.dumps(config, sort_keys=True)
        if frozen not in seen:
            seen.add(frozen)
            out.append(config)
    return out


def label(config: dict[str, object], grid: dict[str, list]) -> str:
    """The configuration as its differences from the candidate default ('default' when none)."""
    changed = [f"{k.split('.')[-1] if not k.startswith('gating.level') else 'L0.' + k.split('.')[-1]}={v}"
               for k, v in config.items() if v != grid[k][0]]
    return ", ".join(changed) or "default"


def score_all(grid: dict[str, list], sets: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per (configuration, set, ruleset) with the accuracy figures of ``accuracy.run``."""
    frames = []
    for i, config in enumerate(configurations(grid)):
        t0 = time.perf_counter()
        with as_defaults(config):
            table = accuracy.run(None, sets=sets)
        table.insert(0, "config", label(config, grid))
        frames.append(table)
        print(f"[{i + 1}] {label(config, grid)}: mean accuracy {table['accuracy'].mean():.3f} "
              f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return pd.concat(frames, ignore_index=True)


# Configurations within this much of the best mean accuracy are a tie. The tie goes to the one that
# leaves no data set behind: whose largest loss on any (set, ruleset) row, against the best that
# any tied configuration reaches on that row, is smallest. (The worst gap to the cluster oracle,
# the rule before, let a 0.008 change on a row no default can lift, 0.44 from its oracle, outweigh
# a 0.09 loss on another row.) Equal on that too: the best mean accuracy, then the fewest changes
# from the candidate default (a parameter that changes no figure is not moved).
TIE = 0.005


def changes(config: str) -> int:
    """How many parameters a configuration label (:func:`label`) moves from the candidate default."""
    return 0 if config == "default" else config.count("=")


def summarise(scores: pd.DataFrame) -> pd.DataFrame:
    """Per configuration: mean accuracy, mean and worst gap, worst loss among the tied; best first
    by :func:`choose`'s rule."""
    summary = scores.groupby("config").agg(mean_accuracy=("accuracy", "mean"), mean_gap=("gap", "mean"),
                                           worst_gap=("gap", "max"))
    # rounded so that configurations with the same rows compare equal whatever the order of summation
    summary = summary.round(9)
    best = summary["mean_accuracy"].max()
    summary["tied"] = summary["mean_accuracy"] >= best - TIE
    rows = scores.pivot_table(index="config", columns=["set", "ruleset"], values="accuracy")
    best_row = rows.loc[summary.index[summary["tied"]]].max()
    summary["worst_loss"] = (best_row - rows).clip(lower=0).max(axis=1).reindex(summary.index).round(9)
    summary["changes"] = [changes(c) for c in summary.index]
    return summary.sort_values(["tied", "worst_loss", "mean_accuracy", "changes"], ascending=[False, True, False, True])


def choose(scores: pd.DataFrame) -> str:
    """The configuration with the best mean accuracy; ties (within TIE) go to the smallest worst loss
    against the tied configurations' best per row, then the best mean accuracy, then the fewest
    changes from the candidate default."""
    return summarise(scores).index[0]


def leave_one_set_out(scores: pd.DataFrame) -> pd.DataFrame:
    """For each held-out set: the configuration chosen on the other sets and its held-out figures."""
    by_config_set = scores.groupby(["config", "set"])["accuracy"].mean().unstack("set")
    rows = []
    for held_out in by_config_set.columns:
        chosen = choose(scores[scores["set"] != held_out])
        held = scores[(scores["config"] == chosen) & (scores["set"] == held_out)]
        default = scores[(scores["config"] == "default") & (scores["set"] == held_out)]
        rows.append({
            "held_out": held_out, "chosen_on_others": chosen,
            "accuracy": held["accuracy"].mean(), "oracle": held["oracle"].mean(), "gap": held["gap"].mean(),
            "default_accuracy": default["accuracy"].mean(),
            "best_possible": by_config_set[held_out].max(),
        })
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", help="comma-separated labelled sets (default: all present)")
    parser.add_argument("--quick", action="store_true",
                        help="leave out the anti_agg, enrichment_reference and coverage_from_subtypes axes")
    parser.add_argument("--csv", help="write every (configuration, set, ruleset) row here")
    parser.add_argument("--from-csv", help="skip the runs: choose from the rows an earlier --csv wrote")
    args = parser.parse_args(argv)
    if args.from_csv:
        report(pd.read_csv(args.from_csv))
        return 0
    grid = QUICK if args.quick else GRID
    scores = score_all(grid, args.sets.split(",") if args.sets else None)
    if args.csv:
        scores.to_csv(args.csv, index=False)
    report(scores)
    return 0


def report(scores: pd.DataFrame) -> None:
    """Print the per-configuration table, the folds and the choice."""
    pd.set_option("display.width", 200)
    summary = summarise(scores)
    print(summary.round(3).to_string())
    folds = leave_one_set_out(scores)
    print()
    print(folds.round(3).to_string(index=False))
    best = summary.index[0]
    agree = int((folds["chosen_on_others"] == best).sum())
    print(f"\nchosen on all sets: {best}; {agree} of {len(folds)} folds chose it without their held-out set")


if __name__ == "__main__":
    raise SystemExit(main())
