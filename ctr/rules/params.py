"""Parameter blocks (scoring, gating, refinement) and their merging with provenance.

Two orders decide which value a threshold takes (docs/semantics.md, "Which value applies"):

- **scope**, most specific first: a marker's own rule (``require M pos_frac >= x``) > a node
  (a type's own ``min_coverage`` line, or ``gating.nodes.NAME`` from a parameter layer) > a level
  (``gating.level_defaults.N``) > global (every other parameter);
- **layer**, within one scope, latest wins: built-in default < tissue profile < ruleset <
  preset < command line.

The most specific scope that has a value wins, whatever layer a wider scope's value came from, so a
level-wide tweak never undoes a type's deliberate rule. A *partial* block is the same model with
only some fields set (``model_fields_set``); merging takes the set fields of each layer in order and
remembers which layer each value came from.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from ctr.errors import ParameterError

Layer = Literal["default", "tissue", "ruleset", "preset", "cli"]
LAYERS: tuple[str, ...] = ("default", "tissue", "ruleset", "preset", "cli")  # lowest precedence first
Scope = Literal["marker", "node", "level", "global"]
Source = Layer  # the layer a value came from
LEVEL_KEYS = ("min_coverage", "min_pos_frac", "min_enrichment", "min_gap")


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def explicit(self) -> dict[str, Any]:
        """The fields that were set explicitly (a partial override)."""
        return self.model_dump(include=self.model_fields_set)


class ScoringParams(_Block):
    positivity: Literal["auto", "quantile", "gate"] = Field(
        "auto", description="how a marker's positive cells are found: 'auto' splits each marker's own distribution "
        "into two populations; 'quantile' cuts at positive_quantile of its non-zero values; 'gate' cuts every "
        "marker at the value 'gate' (data already rescaled around manual gates)")
    gate: float = Field(0.5, description="with positivity 'gate': the value at which every marker turns positive "
                        "(x >= gate); 0.5 is where scimap's rescale puts each marker's gate")
    split_separation: float = Field(
        2.0, ge=0.0, le=10.0, description="with positivity 'auto': Ashman's D at which a two-component fit counts as "
        "two populations (lower splits more markers)")
    split_tail_mads: float = Field(
        2.0, ge=0.5, le=10.0, description="with positivity 'auto': robust standard deviations above the median where a "
        "one-population marker's positive tail starts")
    positive_quantile: float = Field(0.75, gt=0.0, lt=1.0, description="with positivity 'quantile': the quantile of non-zero values that defines 'positive'")
    enrichment_reference: Literal["negative", "median"] = Field(
        "negative", description="what enrichment is measured from: the median of the marker's negative cells, or the median of all cells")
    de_bonus: float = Field(0.6, ge=0.0, le=5.0, description="weight of the differential-expression component")
    anti_weight: float = Field(0.5, ge=0.0, le=5.0, description="weight of the anti-marker penalty")
    anti_agg: Literal["top_quarter", "top2mean", "max", "mean"] = Field(
        "top_quarter", description="aggregation of anti-marker evidence: the mean of the two largest (top2mean), of the "
        "largest quarter, at least two (top_quarter), of all (mean), or the largest (max)")
    coverage_weight: float = Field(0.3, ge=0.0, le=5.0, description="weight of coverage in the score")
    de_top_frac: float = Field(0.2, gt=0.0, le=1.0, description="share of the panel counted as a cluster's top DE markers")
    de_min_k: int = Field(3, ge=1)
    de_max_k: int = Field(12, ge=1)
    de_commonness_alpha: float = Field(0.5, ge=0.0, le=5.0)
    enrichment_center: Literal["median", "mean"] = Field("median", description="cluster centre used for enrichment")
    per_cell_gap: float = Field(0.1, ge=0.0, description="margin a cell needs to vote for a candidate")


class LevelParams(_Block):
    """Thresholds of one hierarchy level (or one node's override). Unset fields inherit."""

    min_coverage: float | None = Field(None, ge=0.0, le=1.0)
    min_pos_frac: float | None = Field(None, ge=0.0, le=1.0)
    min_enrichment: float | None = Field(None, ge=-10.0, le=10.0)
    min_gap: float | None = Field(None, ge=0.0, le=10.0)


DEFAULT_LEVELS: dict[int, LevelParams] = {
    0: LevelParams(min_coverage=0.34, min_pos_frac=0.30, min_enrichment=0.0, min_gap=0.25),
    1: LevelParams(min_coverage=0.40, min_pos_frac=0.20, min_enrichment=-0.5, min_gap=0.30),
    2: LevelParams(min_coverage=0.30, min_pos_frac=0.15, min_enrichment=-1.0, min_gap=0.20),
}


class GatingParams(_Block):
    level_defaults: dict[int, LevelParams] = Field(default_factory=dict)
    # thresholds for one cell type, by name or " / "-joined path: {"Lymphatics": {"min_coverage": 0.5}}
    nodes: dict[str, LevelParams] = Field(default_factory=dict)
    _level_cache: Any = PrivateAttr(default=None)  # see _levels
    max_ambiguity: int = Field(3, ge=2, le=20)
    anti_penalty_hard_gate: float = Field(1.0, ge=0.0)
    tie_coverage_gap: float | None = Field(
        0.25, ge=0.0, le=1.0, description="a near-tie is resolved for the candidate whose coverage beats every "
        "other's by at least this much, over all its markers or over the markers no other candidate lists (null: never)")
    tie_anti_gap: float | None = Field(
        0.25, ge=0.0, description="a near-tie is resolved against candidates whose anti-marker penalty exceeds "
        "the lowest by at least this much (null: never)")
    coverage_from_subtypes: bool = Field(
        True, description="a type whose own markers are not on passes its coverage gate when one of its subtypes "
        "passes every gate: a subtype is a kind of its parent, so its markers are evidence for the parent too")
    min_measured_markers: int = Field(
        1, ge=1, le=100, description="positive markers of a type the panel must measure to judge the type "
        "(all of them when the type lists fewer); a type with fewer is not assessable on this panel")

    @field_validator("level_defaults", mode="before")
    @classmethod
    def _int_level_keys(cls, value: Any) -> Any:
        # JSON users write "0"; YAML and Python users write 0. Both mean level 0.
        if isinstance(value, dict):
            out = {}
            for key, block in value.items():
                try:
                    level = int(key)
                except (TypeError, ValueError):
                    raise ValueError(f"level key {key!r} is not an integer level (0 = roots)") from None
                if level < 0:
                    raise ValueError(f"level key {key!r} must be >= 0")
                out[level] = block
            return out
        return value


# refinement.min_cells when not set: relative to the sample, so small samples can still split
MIN_CELLS_DEFAULT = 500
MIN_CELLS_SHARE = 0.05
MIN_CELLS_FLOOR = 50


class RefinementParams(_Block):
    score_threshold: float = Field(1.0, ge=0.0, description="heterogeneity that triggers subclustering")
    min_cells: int | None = Field(
        None, ge=2,
        description="smallest cluster that may be subclustered; not set: 500, or for a cluster mixed between "
                    "subtypes 5% of the sample's cells (at least 50) when that is fewer")
    heterogeneity_gap: float = Field(0.3, ge=0.0, le=1.0, description="higher favours relabelling over subclustering")
    max_iterations: int = Field(3, ge=1, le=20)
    subtype_signal_threshold: float = Field(0.5, description="score a child needs for a relabel")
    resolution: float = Field(0.5, gt=0.0, description="Leiden resolution used to subcluster")

    def effective_min_cells(self, n_total: int | None) -> int:
        """The size limit for subclustering in a sample of ``n_total`` cells: ``min_cells`` when
        set; otherwise 500, or 5% of the sample (at least 50 cells) when that is fewer, so that a
        mixed 300-cell cluster of a 2,400-cell sample can still be split. ``n_total`` None: 500."""
        if self.min_cells is not None:
            return self.min_cells
        if n_total is None:
            return MIN_CELLS_DEFAULT
        return min(MIN_CELLS_DEFAULT, max(MIN_CELLS_FLOOR, math.ceil(MIN_CELLS_SHARE * n_total)))


BLOCKS: dict[str, type[_Block]] = {"scoring": ScoringParams, "gating": GatingParams, "refinement": RefinementParams}


def parse_block(kind: str, data: dict[str, Any], origin: str) -> _Block:
    """Validate a partial parameter block; errors name the key, the valid keys and ``origin``."""
    from pydantic import ValidationError

    from ctr.diagnostics import did_you_mean
    from ctr.textfile import quote

    model = BLOCKS[kind]
    if not isinstance(data, dict):
        raise ParameterError(f"{origin}: {kind} parameters must be a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                valid = _valid_keys(model, err["loc"])
                problems.append(
                    f"unknown {kind} parameter '{where}'{did_you_mean(str(err['loc'][-1]), valid)}; valid keys: {', '.join(valid)}"
                )
            else:
                problems.append(f"{kind} parameter '{where}': {err['msg']} (got {quote(err.get('input'))})")
        raise ParameterError(f"{origin}: " + "; ".join(problems)) from None


def _valid_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    if model is GatingParams and len(loc) > 1 and loc[0] in ("level_defaults", "nodes"):
        return list(LevelParams.model_fields)
    return list(model.model_fields)


def merge(base: _Block, *overrides: _Block | None) -> _Block:
    """Apply partial overrides in order; level_defaults merge per level and per key."""
    out = base.model_copy(deep=True)
    for layer in overrides:
        if layer is None:
            continue
        for key in layer.model_fields_set:
            value = getattr(layer, key)
            if key in ("level_defaults", "nodes"):
                table = dict(getattr(out, key))
                for entry, block in value.items():
                    table[entry] = table[entry].model_copy(update=block.explicit()) if entry in table else block
                setattr(out, key, table)
            else:
                setattr(out, key, value)
    return out


def level_table(gating: GatingParams) -> dict[int, LevelParams]:
    """The built-in level table with the user's level_defaults merged in, level by level (read-only:
    it is built once per ``level_defaults`` and shared)."""
    return _levels(gating)[0]


def _levels(gating: GatingParams) -> tuple[dict[int, LevelParams], list[int]]:
    """The level table and its sorted levels, cached on ``gating`` until its ``level_defaults`` is
    replaced (the engine asks for it once per node and cluster; 10,000 user levels must stay cheap)."""
    cached = gating._level_cache
    if cached is not None and cached[0] is gating.level_defaults:
        return cached[1], cached[2]
    table = {lvl: block.model_copy() for lvl, block in DEFAULT_LEVELS.items()}
    previous = None
    for lvl in sorted(set(table) | set(gating.level_defaults)):
        # an undefined level starts from the nearest shallower one, as level_params does
        base = table.get(lvl) or table[previous]
        block = gating.level_defaults.get(lvl)
        if block is not None:
            table[lvl] = base.model_copy(update=block.explicit())
        previous = lvl
    levels = sorted(table)
    gating._level_cache = (gating.level_defaults, table, levels)
    return table, levels


def level_entry(gating: GatingParams, level: int) -> int:
    """The level table entry that holds for ``level``: itself, else the deepest defined level above it."""
    levels = _levels(gating)[1]
    return levels[max(0, bisect.bisect_right(levels, level) - 1)]


def level_params(gating: GatingParams, level: int, node_override: LevelParams | None = None) -> LevelParams:
    """The complete thresholds at ``level`` (a level deeper than any defined uses the deepest defined),
    with a node's own override applied on top."""
    resolved = level_table(gating)[level_entry(gating, level)]
    if node_override is not None:
        resolved = resolved.model_copy(update=node_override.explicit())
    return resolved


@dataclass(frozen=True)
class Setting:
    """The value a threshold takes for one cell type, and where it came from.

    ``key`` is the dotted parameter that set it ("gating.level_defaults.0.min_coverage",
    "gating.nodes.Lymphatics.min_coverage"), empty for a number written in a marker's rule;
    ``shadowed`` is a wider scope's value, set by a later layer, that this more specific one kept out.
    """

    value: float | None
    key: str
    layer: Layer
    scope: Scope
    shadowed: Setting | None = None

    def keeping_out(self, wider: Setting) -> Setting:
        """This setting, noting ``wider`` as shadowed when a later layer set it."""
        if LAYERS.index(wider.layer) > LAYERS.index(self.layer):
            return Setting(self.value, self.key, self.layer, self.scope, wider)
        return self


def node_key(path: tuple[str, ...]) -> str:
    """How a cell type is named in ``gating.nodes`` keys: its path, " / "-joined."""
    return " / ".join(path)


class ResolvedParams(BaseModel):
    """Every parameter in force for a run, and which layer each explicitly set value came from.

    ``sources`` maps dotted keys ("scoring.anti_weight", "gating.level_defaults.1.min_gap",
    "gating.nodes.Lymphatics.min_coverage", "refinement.min_cells") to the layer that set them;
    keys not listed are built-in defaults.
    """

    scoring: ScoringParams = Field(default_factory=ScoringParams)
    gating: GatingParams = Field(default_factory=GatingParams)
    refinement: RefinementParams = Field(default_factory=RefinementParams)
    sources: dict[str, Source] = Field(default_factory=dict)

    def source_of(self, key: str) -> Source:
        return self.sources.get(key, "default")

    def setting(self, key: str) -> Setting:
        """A global-scope parameter such as ``gating.anti_penalty_hard_gate``."""
        kind, name = key.split(".", 1)
        return Setting(getattr(getattr(self, kind), name), key, self.source_of(key), "global")

    def level_setting(self, level: int, key: str) -> Setting:
        """``key`` of the level table entry used at ``level`` (a level deeper than any defined uses
        the deepest defined)."""
        table = level_table(self.gating)
        used = level_entry(self.gating, level)
        dotted = f"gating.level_defaults.{used}.{key}"
        return Setting(getattr(table[used], key), dotted, self.source_of(dotted), "level")

    def node_setting(self, node, key: str) -> Setting | None:
        """The node-scope value of ``key`` for ``node`` (anything with ``path`` and ``overrides``):
        the type's own line in the ruleset, or a ``gating.nodes`` entry naming it; the latest layer
        wins. None when no layer set it for this node."""
        best: Setting | None = None
        own = getattr(node.overrides, key, None) if node.overrides is not None else None
        if own is not None:
            best = Setting(own, f"gating.nodes.{node_key(node.path)}.{key}", "ruleset", "node")
        for name in self.node_entries(node.path):
            value = getattr(self.gating.nodes[name], key)
            if value is None:
                continue
            dotted = f"gating.nodes.{name}.{key}"
            layer = self.source_of(dotted)
            if best is None or LAYERS.index(layer) >= LAYERS.index(best.layer):
                best = Setting(value, dotted, layer, "node")
        return best

    def node_entries(self, path: tuple[str, ...]) -> list[str]:
        """The ``gating.nodes`` keys that name the cell type at ``path`` (its name or its path)."""
        from ctr.rules.model import split_path

        return [name for name in self.gating.nodes if name == path[-1] or split_path(name) == tuple(path)]

    def threshold(self, node, key: str) -> Setting:
        """The level threshold ``key`` for ``node``: its node scope when any layer set one there,
        else its level's; a later layer's level value that the node kept out is ``shadowed``."""
        level = self.level_setting(node.level, key)
        own = self.node_setting(node, key)
        return own.keeping_out(level) if own is not None else level

    def for_node(self, node) -> LevelParams:
        """All four level thresholds in force for ``node``."""
        return LevelParams(**{key: self.threshold(node, key).value for key in LEVEL_KEYS})

    def level(self, level: int) -> LevelParams:
        """The thresholds of ``level`` before any node's own values."""
        return level_params(self.gating, level)

    def level_source(self, level: int, key: str) -> Source:
        """Which layer set ``key`` of the level table entry used at ``level``."""
        return self.level_setting(level, key).layer

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the full values plus the provenance of every explicitly set key."""
        gating = self.gating.model_dump(mode="json")
        gating["level_defaults"] = {str(k): v.model_dump() for k, v in sorted(level_table(self.gating).items())}
        gating["nodes"] = {name: block.explicit() for name, block in self.gating.nodes.items()}
        return {
            "scoring": self.scoring.model_dump(mode="json"),
            "gating": gating,
            "refinement": self.refinement.model_dump(mode="json"),
            "sources": dict(sorted(self.sources.items())),
        }


def _flat_keys(kind: str, block: _Block) -> list[str]:
    keys = []
    for key in block.model_fields_set:
        if key in ("level_defaults", "nodes"):
            for entry, lp in getattr(block, key).items():
                keys += [f"{kind}.{key}.{entry}.{k}" for k in lp.model_fields_set]
        else:
            keys.append(f"{kind}.{key}")
    return keys


def resolve_params(layers: list[tuple[Source, dict[str, _Block | None]]]) -> ResolvedParams:
    """Merge parameter layers, lowest precedence first.

    ``layers`` is e.g. ``[("tissue", {"scoring": ..., "gating": ...}), ("ruleset", {...}),
    ("cli", {...})]``; each block is a partial model (only set fields apply). Built-in defaults
    are the base. A node's own values are looked up per node (:meth:`ResolvedParams.threshold`).
    """
    out = ResolvedParams()
    for source, blocks in layers:
        for kind, block in blocks.items():
            if block is None:
                continue
            setattr(out, kind, merge(getattr(out, kind), block))
            for key in _flat_keys(kind, block):
                out.sources[key] = source
    return out


def check_node_entries(params: ResolvedParams, ruleset) -> None:
    """Every ``gating.nodes`` entry must name exactly one cell type of ``ruleset`` (by name, or by
    path when the name is used in several branches)."""
    from ctr.diagnostics import did_you_mean

    nodes = list(ruleset.walk())
    for name in params.gating.nodes:
        hits = [n for n in nodes if name in params.node_entries(n.path)]
        layer = params.source_of(next(iter(k for k in params.sources if k.startswith(f"gating.nodes.{name}.")), ""))
        where = {"cli": "--gating-params", "ruleset": f"ruleset {ruleset.name}"}.get(layer, f"{layer} parameters")
        if not hits:
            names = list(dict.fromkeys(n.name for n in nodes))
            raise ParameterError(
                f"{where}: gating.nodes names cell type '{name}', which ruleset '{ruleset.name}' does not have"
                f"{did_you_mean(name, names)}; valid names: {', '.join(names)}"
            )
        if len(hits) > 1:
            paths = [node_key(n.path) for n in hits]
            raise ParameterError(
                f"{where}: gating.nodes name '{name}' is used by {len(hits)} cell types; name one by its path: "
                + ", ".join(f"'{p}'" for p in paths)
            )
