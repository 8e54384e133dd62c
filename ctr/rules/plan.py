"""The manual refinement plan (``--refinement-plan plan.yaml``).

```yaml
override:                 # set a label outright (free text), e.g. from an expert's review
  - {cluster: "7", label: "Doublets", reason: "CD3+CD19+ co-expression"}
merge:                    # pool clusters, then annotate the pooled cluster again
  - {clusters: ["3", "5"], into: "3", reason: "split by batch only"}
subcluster:               # Leiden on the cluster's cells, the pieces annotated again
  - {cluster: "2", resolution: 0.8}
relabel:                  # move to a node of the ruleset (name or " / "-joined path)
  - {cluster: "4", to: "Epithelium / Secretory Epithelium"}
```
Operations apply in the order override, merge, subcluster, relabel, before the automatic policy.

The reference tool's spelling of the same plan is read into the same model (one model, two
spellings): ``overrides: [{cluster_id, cell_type, reason}]``, ``merge: [{source_clusters,
target_label, reason}]`` (the pooled cluster takes ``target_label``), ``subcluster: [{cluster_id,
resolution, reason}]``, with ``version`` and ``iteration`` kept as plan metadata.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ctr.diagnostics import did_you_mean
from ctr.errors import ParameterError
from ctr.rules.model import PATH_SEP, Ruleset


class _Op(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = "manual plan"

    @field_validator("cluster", "into", mode="before", check_fields=False)
    @classmethod
    def _str(cls, v):
        return None if v is None else str(v)


class Override(_Op):
    cluster: str
    label: str


class Merge(_Op):
    clusters: list[str] = Field(min_length=2)
    into: str | None = None
    label: str | None = None  # set this label on the pooled cluster instead of annotating it again

    @field_validator("clusters", mode="before")
    @classmethod
    def _strs(cls, v):
        return [str(x) for x in v] if isinstance(v, list) else v


class Subcluster(_Op):
    cluster: str
    resolution: float | None = Field(None, gt=0)


class Relabel(_Op):
    cluster: str
    to: str


class RefinementPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: str | None = None  # the reference tool's plan metadata, kept for provenance
    iteration: int | None = None
    override: list[Override] = Field(default_factory=list)
    merge: list[Merge] = Field(default_factory=list)
    subcluster: list[Subcluster] = Field(default_factory=list)
    relabel: list[Relabel] = Field(default_factory=list)

    def named_clusters(self) -> list[str]:
        names = [op.cluster for op in self.override + self.subcluster + self.relabel]
        for op in self.merge:
            names += op.clusters
        return names


PLAN_HINT = "a plan is a mapping such as: override: [{cluster: \"7\", label: \"Doublets\"}]"

# the reference tool's key names -> ours, per operation list
_REF_KEYS = {
    "overrides": ("override", {"cluster_id": "cluster", "cell_type": "label"}),
    "merge": ("merge", {"source_clusters": "clusters", "target_label": "label"}),
    "subcluster": ("subcluster", {"cluster_id": "cluster"}),
}


def _from_reference_spelling(data: dict) -> dict:
    """The reference tool's plan (``overrides``, ``cluster_id``, ``source_clusters`` ...) in our key
    names; a plan in our spelling passes through unchanged. Keys of one spelling are never mixed
    with the other's within one operation, so a typo still meets the validator."""
    out = dict(data)
    if "overrides" in out:
        out.setdefault("override", [])
        out["override"] = list(out["override"] or []) + list(out.pop("overrides") or [])
    for key, (ours, names) in _REF_KEYS.items():
        ours_list = out.get(ours)
        if not isinstance(ours_list, list):
            continue
        out[ours] = [{names.get(k, k): v for k, v in op.items()} if isinstance(op, dict) else op for op in ours_list]
    if "version" in out and out["version"] is not None:
        out["version"] = str(out["version"])
    return out


def plan_from_data(data: dict | None, origin: str = "refinement plan") -> RefinementPlan:
    """Validate a plan given as data (a parsed YAML document or a dict); ``origin`` names it in errors."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParameterError(f"{origin}: a refinement plan is a mapping with keys override, merge, subcluster, relabel")
    try:
        return RefinementPlan.model_validate(_from_reference_spelling(data))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                key = str(err["loc"][-1])
                problems.append(f"unknown key '{where}'{did_you_mean(key, ['override', 'merge', 'subcluster', 'relabel', 'cluster', 'clusters', 'label', 'into', 'to', 'resolution', 'reason', 'overrides', 'cluster_id', 'cell_type', 'source_clusters', 'target_label', 'version', 'iteration'])}")
            else:
                problems.append(f"'{where}': {err['msg']}")
        raise ParameterError(f"{origin}: " + "; ".join(problems)) from None


def check_plan(plan: RefinementPlan, clusters: list[str], ruleset: Ruleset, origin: str = "refinement plan") -> None:
    """Every named cluster must exist and every relabel target must be a node of the ruleset."""
    known = set(clusters)
    unknown = [c for c in plan.named_clusters() if c not in known]
    if unknown:
        raise ParameterError(
            f"{origin}: unknown cluster(s) {', '.join(repr(c) for c in dict.fromkeys(unknown))}"
            f"{did_you_mean(unknown[0], clusters)}; the clusters are: {', '.join(clusters[:40])}"
            + (" ..." if len(clusters) > 40 else "")
        )
    for op in plan.relabel:
        resolve_target(ruleset, op.to, origin)


def resolve_target(ruleset: Ruleset, target: str, origin: str = "refinement plan"):
    """A relabel target: a full path, or a name that is unique in the ruleset."""
    nodes = list(ruleset.walk())
    by_path = {n.path_str: n for n in nodes}
    if target in by_path:
        return by_path[target]
    named = [n for n in nodes if n.name == target]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise ParameterError(f"{origin}: '{target}' names {len(named)} cell types; write the path, one of: "
                             + ", ".join(n.path_str for n in named))
    raise ParameterError(f"{origin}: '{target}' is not a cell type of ruleset '{ruleset.name}'"
                         f"{did_you_mean(target, [n.name for n in nodes])}; paths are written 'Parent{PATH_SEP}Child'")
