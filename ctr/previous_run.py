"""What an earlier ctr run left in ``uns[key_added]`` of its output.h5ad: the one place that reads it.

A rerun on an output.h5ad (``--annotation-only``) keeps that run's ruleset, tissue profile, preset,
layer and var column of marker names unless they are given again, and never overwrites obs columns or an uns entry that ctr
did not write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ctr.rules.model import Ruleset


@dataclass(frozen=True)
class PreviousRun:
    key_added: str
    present: bool  # something is stored under uns[key_added]
    record: dict[str, Any]  # uns[key_added] when it is a mapping, else {}

    @classmethod
    def of(cls, adata, key_added: str) -> PreviousRun:
        info = adata.uns.get(key_added)
        return cls(key_added, info is not None, dict(info) if isinstance(info, dict) else {})

    @property
    def made_by_ctr(self) -> bool:
        return "version" in self.record

    @property
    def obs_keys(self) -> set[str]:
        """The obs columns that run wrote (a rerun may replace them)."""
        return set(self.record.get("obs_keys", []))

    @property
    def provenance(self) -> dict[str, Any]:
        try:
            value = json.loads(str(self.record["provenance"])) if self.record.get("provenance") else {}
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    @property
    def tissue(self) -> str | None:
        tissue = self.provenance.get("tissue")
        return str(tissue["name"]) if isinstance(tissue, dict) and tissue.get("name") else None

    @property
    def preset(self) -> str | None:
        return str(self.provenance["preset"]) if self.provenance.get("preset") else None

    @property
    def var_names(self) -> str | None:
        """The var column that run read the marker names from (None: var_names)."""
        column = self.provenance.get("var_names")
        return str(column) if column else None

    def layer(self, adata) -> str | None:
        """The layer that run read, when ``adata`` still has it."""
        layer = self.record.get("layer")
        if layer and (layer in adata.layers or layer == "raw"):
            return str(layer)
        return None

    @property
    def has_ruleset(self) -> bool:
        return isinstance(self.record.get("ruleset"), dict)

    def ruleset(self) -> Ruleset | None:
        """The run's ruleset, compiled from the text the user wrote under its original path, so the
        trace cites the lines of that file; ``stored_sha256`` records that a stored copy was used
        (verified by checksum). When that text no longer compiles on its own (an include that
        moved), the flattened copy is used and cited by the original path without lines."""
        from ctr.lang import compile_ruleset

        if not self.has_ruleset:
            return None
        rs = self.record["ruleset"]
        original = str(rs.get("source_file") or rs.get("name") or "previous-run")
        digest = str(rs.get("sha256") or "")
        if rs.get("source_text"):
            result = compile_ruleset(original, text=str(rs["source_text"]), fmt=str(rs.get("format") or "ctr"))
            if result.ok and (not digest or result.ruleset.digest == digest):
                return result.ruleset.model_copy(update={"stored_sha256": result.ruleset.digest})
        text = rs.get("compiled_text")  # the flattened ruleset (includes resolved), in the DSL
        if not text:
            return None
        name = f"{rs.get('name', 'previous-run')} (from {self.key_added} run in the input file)"
        result = compile_ruleset(name, text=str(text), fmt="ctr")
        return _without_lines(result.ruleset, original) if result.ok else None


def _without_lines(ruleset: Ruleset, original: str) -> Ruleset:
    """A ruleset compiled from a flattened copy, its locations pointing at the original file (no
    line: the copy's lines are not the user's)."""
    from ctr.diagnostics import SourceLoc

    where = SourceLoc(file=original)
    for node in ruleset.walk():
        node.override_locs = {k: where for k in node.override_locs}
        for rule in (*node.requires, *node.vetoes, *node.conditions):
            rule.loc = where
    ruleset.param_locs = {k: where for k in ruleset.param_locs}
    return ruleset.model_copy(update={"source_file": original, "stored_sha256": ruleset.digest})
