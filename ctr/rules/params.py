"""Parameter blocks (scoring, gating, refinement) and their merging with provenance.

Precedence, lowest first: built-in defaults < tissue profile < ruleset < per-node override < CLI.
A *partial* block is the same model with only some fields set (``model_fields_set``); merging
takes the set fields of each layer in order and remembers which layer each value came from.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ctr.errors import ParameterError

Source = Literal["default", "preset", "tissue", "ruleset", "node", "cli"]


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def explicit(self) -> dict[str, Any]:
        """The fields that were set explicitly (a partial override)."""
        return self.model_dump(include=self.model_fields_set)


class ScoringParams(_Block):
    positive_quantile: float = Field(0.75, gt=0.0, lt=1.0, description="quantile of non-zero values that defines 'positive'")
    de_bonus: float = Field(0.6, ge=0.0, le=5.0, description="weight of the differential-expression component")
    anti_weight: float = Field(0.5, ge=0.0, le=5.0, description="weight of the anti-marker penalty")
    anti_agg: Literal["top2mean", "max", "mean"] = Field("top2mean", description="aggregation of anti-marker evidence")
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
    0: LevelParams(min_coverage=0.50, min_pos_frac=0.30, min_enrichment=0.0, min_gap=0.25),
    1: LevelParams(min_coverage=0.40, min_pos_frac=0.20, min_enrichment=-0.5, min_gap=0.30),
    2: LevelParams(min_coverage=0.30, min_pos_frac=0.15, min_enrichment=-1.0, min_gap=0.20),
}


class GatingParams(_Block):
    level_defaults: dict[int, LevelParams] = Field(default_factory=dict)
    max_ambiguity: int = Field(3, ge=2, le=20)
    anti_penalty_hard_gate: float = Field(1.0, ge=0.0)

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


class RefinementParams(_Block):
    score_threshold: float = Field(1.0, ge=0.0, description="heterogeneity that triggers subclustering")
    min_cells: int = Field(500, ge=2, description="smallest cluster that may be subclustered")
    heterogeneity_gap: float = Field(0.3, ge=0.0, le=1.0, description="higher favours relabelling over subclustering")
    max_iterations: int = Field(3, ge=1, le=20)
    subtype_signal_threshold: float = Field(0.5, description="score a child needs for a relabel")
    resolution: float = Field(0.5, gt=0.0, description="Leiden resolution used to subcluster")


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
    if model is GatingParams and len(loc) > 1 and loc[0] == "level_defaults":
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
            if key == "level_defaults":
                levels = dict(out.level_defaults)
                for lvl, block in value.items():
                    levels[lvl] = levels[lvl].model_copy(update=block.explicit()) if lvl in levels else block
                out.level_defaults = levels
            else:
                setattr(out, key, value)
    return out


def level_table(gating: GatingParams) -> dict[int, LevelParams]:
    """The built-in level table with the user's level_defaults merged in, level by level."""
    table = {lvl: block.model_copy() for lvl, block in DEFAULT_LEVELS.items()}
    for lvl, block in gating.level_defaults.items():
        base = table.get(lvl) or table[max(k for k in table if k < lvl)]
        table[lvl] = base.model_copy(update=block.explicit())
    return table


def level_params(gating: GatingParams, level: int, node_override: LevelParams | None = None) -> LevelParams:
    """The complete thresholds at ``level`` (a level deeper than any defined uses the deepest defined),
    with a node's own override applied on top."""
    table = level_table(gating)
    resolved = table[level] if level in table else table[max(k for k in table if k <= level)]
    if node_override is not None:
        resolved = resolved.model_copy(update=node_override.explicit())
    return resolved


class ResolvedParams(BaseModel):
    """Every parameter in force for a run, and which layer each explicitly set value came from.

    ``sources`` maps dotted keys ("scoring.anti_weight", "gating.level_defaults.1.min_gap",
    "refinement.min_cells") to the layer that set them; keys not listed are built-in defaults.
    """

    scoring: ScoringParams = Field(default_factory=ScoringParams)
    gating: GatingParams = Field(default_factory=GatingParams)
    refinement: RefinementParams = Field(default_factory=RefinementParams)
    sources: dict[str, Source] = Field(default_factory=dict)

    def source_of(self, key: str) -> Source:
        return self.sources.get(key, "default")

    def level(self, level: int, node_override: LevelParams | None = None) -> LevelParams:
        """Thresholds at ``level`` with a node's override applied; values given on the command
        line still win over the node (precedence: ... < per-node override < CLI)."""
        resolved = level_params(self.gating, level, node_override)
        if node_override is None or not node_override.model_fields_set:
            return resolved
        base = level_params(self.gating, level)
        cli = {k: getattr(base, k) for k in node_override.model_fields_set if self.level_source(level, k) == "cli"}
        return resolved.model_copy(update=cli) if cli else resolved

    def level_key_source(self, level: int, key: str, node_override: LevelParams | None = None) -> Source:
        """Which layer decided ``key`` at ``level`` for a node with ``node_override``."""
        source = self.level_source(level, key)
        if node_override is not None and key in node_override.model_fields_set and source != "cli":
            return "node"
        return source

    def level_source(self, level: int, key: str) -> Source:
        """Which layer set ``key`` of the level table entry used at ``level``."""
        table = level_table(self.gating)
        used = level if level in table else max(k for k in table if k <= level)
        return self.source_of(f"gating.level_defaults.{used}.{key}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the full values plus the provenance of every explicitly set key."""
        gating = self.gating.model_dump(mode="json")
        gating["level_defaults"] = {str(k): v.model_dump() for k, v in sorted(level_table(self.gating).items())}
        return {
            "scoring": self.scoring.model_dump(mode="json"),
            "gating": gating,
            "refinement": self.refinement.model_dump(mode="json"),
            "sources": dict(sorted(self.sources.items())),
        }


def _flat_keys(kind: str, block: _Block) -> list[str]:
    keys = []
    for key in block.model_fields_set:
        if key == "level_defaults":
            for lvl, lp in getattr(block, key).items():
                keys += [f"{kind}.level_defaults.{lvl}.{k}" for k in lp.model_fields_set]
        else:
            keys.append(f"{kind}.{key}")
    return keys


def resolve_params(layers: list[tuple[Source, dict[str, _Block | None]]]) -> ResolvedParams:
    """Merge parameter layers, lowest precedence first.

    ``layers`` is e.g. ``[("tissue", {"scoring": ..., "gating": ...}), ("ruleset", {...}),
    ("cli", {...})]``; each block is a partial model (only set fields apply). Built-in defaults
    are the base. Per-node overrides are applied later, node by node, by the engine.
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
