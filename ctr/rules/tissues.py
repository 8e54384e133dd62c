"""Tissue profiles (``tissues/*.yaml``): a named tissue, its aliases, the ruleset and parameter
preset that suit it, optional parameter overrides, and the composition a sample usually has
(used for plausibility warnings in reports)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ctr.diagnostics import did_you_mean
from ctr.errors import ParameterError
from ctr.resources import tissues_dir
from ctr.rules.params import BLOCKS, parse_block
from ctr.rules.presets import PRESETS, preset_blocks


class TissueProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    aliases: list[str] = Field(default_factory=list)
    description: str = ""
    ruleset: str
    preset: str | None = None
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)  # partial scoring/gating/refinement
    # cell type path (" / "-joined) or name -> [min_frac, max_frac] of cells in a typical sample
    expected_composition: dict[str, tuple[float, float]] = Field(default_factory=dict)
    source_file: str | None = None

    @field_validator("params")
    @classmethod
    def _known_blocks(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for kind, block in value.items():
            if kind not in BLOCKS:
                raise ValueError(f"unknown parameter block '{kind}'{did_you_mean(kind, BLOCKS)}; valid: {', '.join(BLOCKS)}")
            parse_block(kind, block, f"params.{kind}")
        return value

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        if value is not None and value not in PRESETS:
            raise ValueError(f"unknown preset '{value}'{did_you_mean(value, PRESETS)}; valid: {', '.join(PRESETS)}")
        return value

    @field_validator("expected_composition")
    @classmethod
    def _fractions(cls, value: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        for cell_type, (lo, hi) in value.items():
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"expected_composition['{cell_type}']: need 0 <= min <= max <= 1, got [{lo}, {hi}]")
        return value

    @model_validator(mode="after")
    def _alias_not_name(self) -> TissueProfile:
        if self.name in self.aliases:
            raise ValueError(f"alias '{self.name}' repeats the profile name")
        return self

    def preset_blocks(self) -> dict[str, Any]:
        """The preset's validated partial blocks ({} without a preset): the 'preset' layer."""
        return preset_blocks(self.preset) if self.preset else {}

    def param_blocks(self) -> dict[str, Any]:
        """The profile's own validated partial blocks: the 'tissue' layer."""
        return {kind: parse_block(kind, data, f"tissue profile {self.name}") for kind, data in self.params.items()}


def _read_profile(path: Path) -> TissueProfile:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ParameterError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ParameterError(f"{path}: a tissue profile must be a YAML mapping")
    try:
        return TissueProfile.model_validate({**data, "source_file": str(path)})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'profile'}: {e['msg']}" for e in exc.errors())
        raise ParameterError(f"{path}: invalid tissue profile: {problems}") from None


@cache
def _profiles(folder: Path) -> tuple[TissueProfile, ...]:
    return tuple(_read_profile(p) for p in sorted(folder.glob("*.yaml")))


def list_tissues() -> list[TissueProfile]:
    """Every built-in tissue profile, sorted by name."""
    return sorted(_profiles(tissues_dir()), key=lambda t: t.name)


def load_tissue(name_or_alias: str) -> TissueProfile:
    """The profile called ``name_or_alias`` (case-insensitive, names and aliases)."""
    lookup: dict[str, TissueProfile] = {}
    for profile in list_tissues():
        for key in (profile.name, *profile.aliases):
            lookup.setdefault(key.lower(), profile)
    key = name_or_alias.strip().lower()
    if key in lookup:
        return lookup[key]
    names = [t.name for t in list_tissues()]
    raise ParameterError(
        f"unknown tissue '{name_or_alias}'{did_you_mean(name_or_alias, list(lookup))}; "
        f"valid tissues: {', '.join(names)} (aliases: "
        + "; ".join(f"{t.name}: {', '.join(t.aliases)}" for t in list_tissues() if t.aliases)
        + ")"
    )
