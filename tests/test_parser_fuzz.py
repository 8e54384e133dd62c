"""Hostile or broken input never crashes or hangs the compiler: it only yields diagnostics."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctr.codes import CODES
from ctr.lang import compile_ruleset

SNIPPETS = [
    'ruleset t "d"\ntype A {\n  markers X, "Y z"\n  anti W\n}\n',
    "scoring { anti_weight 0.5 anti_agg max }\nlevel 1 { min_gap 0.2 }\n",
    "type A { markers X\n  require X pos_frac >= 0.5 enrichment >= 0\n  veto B, C pos_frac > 0.2 }\n",
    "type A { markers X\n  when at_least(2, pos_frac(X) > 0.3, -mean(Y) <= 1, not score > 2) or n_cells / 2 > 3 }\n",
    'alias "Pan-CK" = PanCK, KRT\nthreshold CD45 >= 1.5\ninclude "nothing.ctr"\n',
    'extend "A / B" { type C { markers D } }\nreplace type "A" { markers E }\nremove "A / B"\n',
]
ALPHABET = 'abcdeXYZ019 _-+.,;:{}()[]<>=!#"\\/*\n\t@é'

FAST = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


def _check(text: str, name: str = "fuzz.ctr") -> None:
    result = compile_ruleset(name, text=text)
    for diag in result.diagnostics:
        assert diag.code in CODES
        assert diag.loc is not None and diag.loc.file == name
        if diag.loc.line is not None:
            assert 1 <= diag.loc.line <= max(text.count("\n") + 1, 1)
    if result.ruleset is None:
        assert result.errors


@FAST
@given(st.text(alphabet=ALPHABET, max_size=80))
def test_random_text(text):
    _check(text)


@st.composite
def mutated(draw):
    text = draw(st.sampled_from(SNIPPETS))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["delete", "insert", "swap"]))
        if action == "delete" and text:
            pos = min(pos, len(text) - 1)
            text = text[:pos] + text[pos + 1 :]
        elif action == "insert":
            text = text[:pos] + draw(st.sampled_from(ALPHABET)) + text[pos:]
        elif len(text) > 1:
            pos = min(pos, len(text) - 2)
            text = text[:pos] + text[pos + 1] + text[pos] + text[pos + 2 :]
    return text


@FAST
@given(mutated())
def test_mutated_snippets(text):
    _check(text)


@settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(st.text(alphabet='{}[]:,"-ab01 \n#&*!', max_size=60), st.sampled_from(["fuzz.yaml", "fuzz.json"]))
def test_random_yaml_and_json(text, name):
    _check(text, name)
