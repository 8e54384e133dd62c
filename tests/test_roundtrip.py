"""Every spelling carries the whole rule graph: ctr -> yaml -> json -> ctr keeps Ruleset.canonical()."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctr.lang import compile_ruleset, export_text, load_ruleset
from ctr.ruleset_commands import export_ruleset
from ctr.rules import expr as E
from ctr.rules.model import (
    Alias,
    CellType,
    Condition,
    MarkerRef,
    Requirement,
    Ruleset,
    Threshold,
    Veto,
    assign_paths,
)
from ctr.rules.params import GatingParams, LevelParams, RefinementParams, ScoringParams

NAME_CHARS = string.ascii_letters + string.digits + " _-+./()'&,:#{}\"\\é"
names = st.text(alphabet=NAME_CHARS, min_size=1, max_size=12).filter(lambda s: s.strip() == s and s.strip())
root_names = names.filter(lambda s: not s.startswith("_"))
markers = st.lists(names.map(lambda n: MarkerRef(name=n)), max_size=4)
fractions = st.sampled_from([0.0, 0.05, 0.1, 0.25, 0.3, 0.5, 0.75, 1.0])
small = st.sampled_from([-1.5, -0.5, 0.0, 0.25, 1.0, 2.0, 3.5])
numbers = st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.0, 25.0, 1e-05])


def _num_expr():
    leaf = st.one_of(
        numbers.map(lambda v: E.Num(value=v)),
        st.builds(E.MarkerStat, func=st.sampled_from(E.MARKER_FUNCS), marker=names),
        st.sampled_from(E.NODE_VARS).map(lambda v: E.Var(name=v)),
    )
    return st.recursive(
        leaf,
        lambda inner: st.one_of(
            inner.map(lambda a: E.Neg(operand=a)),
            st.builds(E.BinOp, op=st.sampled_from("+-*/"), left=inner, right=inner),
            st.builds(E.Call, func=st.sampled_from(["max", "min"]), args=st.lists(inner, min_size=1, max_size=3)),
            inner.map(lambda a: E.Call(func="abs", args=[a])),
        ),
        max_leaves=4,
    )


def _bool_expr():
    num = _num_expr()
    compare = st.builds(E.Compare, op=st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), left=num, right=num)
    return st.recursive(
        compare,
        lambda inner: st.one_of(
            st.builds(E.BoolOp, op=st.sampled_from(["and", "or"]), args=st.lists(inner, min_size=2, max_size=3)),
            inner.map(lambda a: E.Not(operand=a)),
            st.builds(E.Combinator, func=st.sampled_from(["all", "any"]), args=st.lists(inner, min_size=1, max_size=3)),
            st.builds(E.Combinator, func=st.just("at_least"), k=st.integers(0, 3), args=st.lists(inner, min_size=1, max_size=3)),
        ),
        max_leaves=4,
    )


conditions = _bool_expr().map(lambda e: Condition(expr=e, text=E.to_text(e)))
requirements = st.builds(
    Requirement, marker=names, min_pos_frac=st.one_of(st.none(), fractions), min_enrichment=st.one_of(st.none(), small)
)
vetoes = st.builds(Veto, markers=st.lists(names, min_size=1, max_size=3), max_pos_frac=fractions)


@st.composite
def partial(draw, model, values: dict):
    keys = draw(st.lists(st.sampled_from(sorted(values)), unique=True, max_size=len(values)))
    return model(**{k: draw(values[k]) for k in keys})


level_values = {"min_coverage": fractions, "min_pos_frac": fractions, "min_enrichment": small, "min_gap": fractions}
scoring_values = {
    "positive_quantile": st.sampled_from([0.5, 0.75, 0.9]),
    "anti_weight": st.sampled_from([0.0, 0.5, 1.0]),
    "anti_agg": st.sampled_from(["top2mean", "max", "mean"]),
    "de_min_k": st.integers(1, 5),
    "enrichment_center": st.sampled_from(["median", "mean"]),
}
gating_values = {"max_ambiguity": st.integers(2, 5), "anti_penalty_hard_gate": st.sampled_from([0.5, 1.0, 2.0])}
refinement_values = {"min_cells": st.integers(2, 1000), "resolution": st.sampled_from([0.2, 0.5, 1.5])}


def cell_type(name_strategy, depth: int):
    @st.composite
    def build(draw):
        kids = []
        if depth < 3:
            kids = draw(st.lists(cell_type(names, depth + 1), max_size=2, unique_by=lambda n: n.name))
        return CellType(
            name=draw(name_strategy),
            markers=draw(markers),
            anti=draw(markers),
            requires=draw(st.lists(requirements, max_size=2)),
            vetoes=draw(st.lists(vetoes, max_size=2)),
            conditions=draw(st.lists(conditions, max_size=2)),
            overrides=draw(partial(LevelParams, level_values)),
            cite=draw(st.lists(names, max_size=2)),
            children=kids,
        )

    return build()


@st.composite
def rulesets(draw) -> Ruleset:
    levels = draw(st.dictionaries(st.integers(0, 4), partial(LevelParams, level_values).filter(lambda b: b.explicit()), max_size=2))
    gating = draw(partial(GatingParams, gating_values))
    if levels:
        gating = GatingParams(level_defaults=levels, **gating.explicit())
    ruleset = Ruleset(
        name=draw(names),
        description=draw(st.one_of(st.just(""), names)),
        aliases=[
            Alias(canonical=c, synonyms=s)
            for c, s in draw(st.dictionaries(names, st.lists(names, min_size=1, max_size=2), max_size=2)).items()
        ],
        thresholds=[
            Threshold(marker=m, op=op, value=v)
            for m, (op, v) in draw(st.dictionaries(names, st.tuples(st.sampled_from([">", ">="]), small), max_size=2)).items()
        ],
        scoring=draw(partial(ScoringParams, scoring_values)),
        gating=gating,
        refinement=draw(partial(RefinementParams, refinement_values)),
        roots=draw(st.lists(cell_type(root_names, 0), min_size=1, max_size=3, unique_by=lambda n: n.name)),
    )
    assign_paths(ruleset.roots)
    return ruleset


def _through(ruleset: Ruleset, fmt: str) -> Ruleset:
    text = export_text(ruleset, fmt)
    result = compile_ruleset(f"roundtrip.{fmt}", text=text)
    errors = [d.format(text) for d in result.diagnostics if d.level == "error"]
    assert not errors, "\n".join(errors) + "\n---\n" + text
    return result.ruleset


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(rulesets())
def test_ctr_yaml_json_ctr_keeps_the_graph(ruleset):
    expected = ruleset.canonical()
    current = ruleset
    for fmt in ("ctr", "yaml", "json", "ctr"):
        current = _through(current, fmt)
        assert current.canonical() == expected, fmt


def test_example_survives_all_spellings_and_keeps_partial_params(tmp_path):
    src = tmp_path / "ft.ctr"
    src.write_text(
        'ruleset ft "Fallopian tube"\n'
        "scoring { anti_weight 0.8 }\n"
        "level 1 { min_gap 0.25 }\n"
        "type Epithelium {\n"
        "  markers EPCAM, KRT8\n"
        "  require EPCAM pos_frac >= 0.5\n"
        "  type \"Secretory Epithelium\" { markers PAX8\n"
        "    when pos_frac(PAX8) > 2 * pos_frac(FOXJ1)\n"
        "    min_coverage 0.25 }\n"
        "}\n"
    )
    original = load_ruleset(src)
    for suffix in (".yaml", ".json", ".ctr"):
        out = export_ruleset(original, tmp_path / f"out{suffix}")
        again = load_ruleset(out)
        assert again.canonical() == original.canonical()
        assert again.scoring.model_fields_set == {"anti_weight"}
        assert again.gating.model_fields_set == {"level_defaults"}
        assert again.gating.level_defaults[1].model_fields_set == {"min_gap"}
        assert again.node("Epithelium / Secretory Epithelium").overrides.model_fields_set == {"min_coverage"}
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write leaves no temp file behind


def test_export_to_ctr_keeps_the_authors_comments(tmp_path):
    from ctr.lang import load_ruleset

    source = tmp_path / "mine.ctr"
    source.write_text('ruleset mine "with notes"\n# why these markers: Hu et al. 2020\ntype "T" {\n'
                      '  markers CD3E, CD2  # CD3E first\n}\n')
    out = export_ruleset(load_ruleset(str(source)), tmp_path / "copy.ctr")
    text = out.read_text()
    assert "# why these markers: Hu et al. 2020" in text and "# CD3E first" in text
    assert load_ruleset(str(out)).canonical() == load_ruleset(str(source)).canonical()
    # a ruleset changed since it was read is exported from its graph, not from the stale text
    changed = load_ruleset(str(source))
    changed.roots[0].name = "T cells"
    assert 'type "T cells"' in export_ruleset(changed, tmp_path / "changed.ctr").read_text()
