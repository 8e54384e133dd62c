"""Named parameter presets: the user guide's "Common Parameter Combinations".

A preset is a set of partial blocks (scoring, gating, refinement); it sits just above the
built-in defaults in the precedence order (a tissue profile, the ruleset and the CLI override it).
"""

from __future__ import annotations

from typing import Any

from ctr.diagnostics import did_you_mean
from ctr.errors import ParameterError
from ctr.rules.params import parse_block

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # sparse data such as spatial transcriptomics or small protein panels
    "sparse_spatial": {
        "scoring": {"positive_quantile": 0.50},
        "gating": {
            "level_defaults": {
                0: {"min_coverage": 0.30, "min_pos_frac": 0.15},
                1: {"min_coverage": 0.20, "min_pos_frac": 0.10},
            }
        },
    },
    # high-quality deep scRNA-seq
    "deep_scrnaseq": {
        "scoring": {"positive_quantile": 0.80, "de_bonus": 0.7},
        "gating": {
            "level_defaults": {
                0: {"min_coverage": 0.55, "min_gap": 0.45},
                1: {"min_coverage": 0.45, "min_gap": 0.35},
            }
        },
    },
    # heterogeneous tumour samples
    "heterogeneous_tumor": {
        "scoring": {"anti_weight": 0.8},
        "gating": {"level_defaults": {0: {"min_coverage": 0.35, "min_pos_frac": 0.20}}},
        "refinement": {"score_threshold": 0.8, "min_cells": 300},
    },
    # conservative annotation (high precision)
    "conservative": {
        "scoring": {"anti_weight": 0.9, "anti_agg": "max"},
        "gating": {"level_defaults": {0: {"min_coverage": 0.55, "min_gap": 0.50}}},
        "refinement": {"score_threshold": 1.5},
    },
}


def preset_blocks(name: str) -> dict[str, Any]:
    """The validated partial blocks of preset ``name``: ``{"scoring": ScoringParams, ...}``."""
    if name not in PRESETS:
        raise ParameterError(
            f"unknown preset '{name}'{did_you_mean(name, PRESETS)}; valid presets: {', '.join(PRESETS)}"
        )
    return {kind: parse_block(kind, data, f"preset {name}") for kind, data in PRESETS[name].items()}
