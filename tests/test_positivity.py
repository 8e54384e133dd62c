"""The data-driven positivity split (positivity: auto) on synthetic distributions of known truth."""

from __future__ import annotations

import numpy as np
import pytest

from ctr.rules.params import ScoringParams
from ctr.stats import compute_statistics
from ctr.stats.positivity import find_split

N = 50_000
# A split is "found" when the share it calls positive is within this of the true share, and the
# positives it calls are this pure.
SHARE_TOLERANCE = 0.01
MIN_PURITY = 0.97


def two_populations(share: float, *, zeros: float = 0.0, negative=(0.0, 1.0), positive=(5.0, 1.0), seed=0):
    """Values and truth: ``share`` positive cells, ``zeros`` of the negatives exact zeros."""
    rng = np.random.default_rng(seed)
    n_pos = int(N * share)
    n_zero = int((N - n_pos) * zeros)
    values = np.r_[rng.normal(*negative, N - n_pos - n_zero), np.zeros(n_zero), rng.normal(*positive, n_pos)]
    truth = np.r_[np.zeros(N - n_pos, bool), np.ones(n_pos, bool)]
    return values, truth


def called(values, split):
    return values > split.threshold if split.op == ">" else values >= split.threshold


@pytest.mark.parametrize("share", [0.02, 0.30, 0.80])
@pytest.mark.parametrize(
    "shape",
    [
        dict(),  # continuous with negatives (flow after arcsinh/logicle)
        dict(zeros=0.5, negative=(0.8, 0.3), positive=(3.0, 0.5)),  # true zeros (MIBI/IMC counts)
        dict(negative=(-0.5, 0.4), positive=(2.0, 0.6)),  # close populations, negatives below zero
    ],
    ids=["continuous", "zeros", "close"],
)
def test_two_populations_are_split(share, shape):
    values, truth = two_populations(share, **shape)
    if "zeros" in shape:
        values = np.clip(values, 0.0, None)
    split = find_split(values)
    pos = called(values, split)
    assert split.method == "mixture"
    assert split.quality >= 2.0
    assert abs(pos.mean() - share) <= SHARE_TOLERANCE
    assert truth[pos].mean() >= MIN_PURITY


def test_unimodal_marker_has_few_positives_and_says_so():
    values = np.random.default_rng(1).normal(2.0, 0.5, N)
    split = find_split(values)
    assert split.method == "tail"
    # the tail beyond 2 robust SDs of a normal population: about 2.3% of it
    assert called(values, split).mean() < 0.03


def test_zeros_and_one_expressed_population_means_detected():
    # log-normalised RNA: a gene is zero or expressed at one level; detected = positive
    rng = np.random.default_rng(2)
    values = np.r_[np.zeros(30_000), rng.normal(1.5, 0.4, 20_000).clip(0.05)]
    split = find_split(values)
    assert split.method == "floor" and split.op == ">" and split.threshold == 0.0
    assert called(values, split).mean() == pytest.approx(0.4)


def test_constant_marker_has_no_split():
    assert find_split(np.full(100, 3.0)).method == "none"


def test_missing_values_are_ignored():
    values, truth = two_populations(0.3)
    values[::10] = np.nan
    split = find_split(values)
    assert split.method == "mixture"
    assert abs(called(values[~np.isnan(values)], split).mean() - 0.3) <= SHARE_TOLERANCE


def test_majority_population_reads_as_enriched():
    # 80% of cells express the marker; the 80% cluster must read as enriched, not as "the median"
    values, truth = two_populations(0.8)
    labels = np.where(truth, "pos", "neg")
    auto = compute_statistics(values[:, None], labels, ["K"], ScoringParams())
    old = compute_statistics(values[:, None], labels, ["K"], ScoringParams(positivity="quantile", enrichment_reference="median"))

    def stat(stats, cluster, column):
        return dict(zip(stats.cluster["cluster"], stats.cluster[column]))[cluster]

    assert stat(auto, "pos", "pos_frac") > 0.97
    assert stat(auto, "neg", "pos_frac") < 0.03
    assert stat(auto, "pos", "enrichment") > 1.0
    # the quantile rule calls at most a quarter of the non-zero values positive (a few more
    # here, where negatives are non-zero too): the expressing majority cannot read as positive
    assert stat(old, "pos", "pos_frac") < 0.35
    g = auto.global_.row(0, named=True)
    assert g["threshold_method"] == "mixture"
    assert g["enrichment_reference"] == pytest.approx(g["negative_median"])


def test_absolute_threshold_still_wins():
    values, _ = two_populations(0.3)
    stats = compute_statistics(values[:, None], np.zeros(N, int), ["K"], ScoringParams(), thresholds={"K": (">", 4.0)})
    g = stats.global_.row(0, named=True)
    assert (g["threshold"], g["threshold_source"], g["threshold_method"]) == (4.0, "absolute", "absolute")


def test_counts_above_zero_are_detections_not_two_populations():
    # normalised, log-transformed UMI counts: 1, 2, 3 ... counts form separate levels above a
    # gap from zero; splitting them would cut one count from two
    rng = np.random.default_rng(3)
    counts = rng.poisson(0.4, 20_000)
    size = rng.uniform(0.8, 1.2, 20_000)
    values = np.log1p(counts / size * 3.0)
    split = find_split(values)
    assert split.method == "floor" and split.threshold == 0.0
    assert called(values, split).mean() == pytest.approx((counts > 0).mean())


def test_a_single_population_is_never_split_in_two():
    # a Gaussian or a skewed population has one mode, however far apart a fit puts its halves
    rng = np.random.default_rng(4)
    for values in (rng.normal(1.5, 0.4, N), np.log1p(rng.lognormal(0.0, 1.0, N))):
        assert find_split(values, separation=0.5).method == "tail"


def test_split_parameters_move_the_split():
    # two close populations (D about 2.6, a shallow valley): split at the default bar, not at 3
    values, truth = two_populations(0.5, positive=(2.6, 1.0))
    assert find_split(values).method == "mixture"
    assert find_split(values, separation=3.0).method == "tail"
    skewed = np.log1p(np.random.default_rng(4).lognormal(0.0, 1.0, N))
    assert called(skewed, find_split(skewed, tail_mads=3.0)).mean() < called(skewed, find_split(skewed)).mean()
    stats = compute_statistics(values[:, None], np.zeros(N, int), ["K"], ScoringParams(split_separation=3.0))
    assert stats.global_.row(0, named=True)["threshold_method"] == "tail"


def _rescaled_around_gates(rng, n: int, markers: int) -> np.ndarray:
    """scimap's rescale: each marker's log values mapped piecewise so that its gate sits at 0.5,
    the gate set inside the one population (here at its 60th percentile)."""
    out = np.empty((n, markers))
    for j in range(markers):
        x = rng.normal(5.0, 1.0, n)
        gate = np.quantile(x, 0.6)
        lo, hi = x.min(), x.max()
        out[:, j] = np.where(x < gate, 0.5 * (x - lo) / (gate - lo), 0.5 + 0.5 * (x - gate) / (hi - gate))
    return out


def test_gate_positivity_cuts_every_marker_at_one_value():
    rng = np.random.default_rng(3)
    values = _rescaled_around_gates(rng, N, 3)
    labels, names = np.zeros(N, int), ["A", "B", "C"]

    def table(scoring, **kw):
        g = compute_statistics(values, labels, names, scoring, **kw).global_
        return {row["marker"]: row for row in g.iter_rows(named=True)}

    gated = table(ScoringParams(positivity="gate", gate=0.5))
    assert all(r["threshold"] == 0.5 and r["threshold_method"] == "gate" for r in gated.values())
    # the gates' own phenotype: 40% of the cells lie at or above each gate
    np.testing.assert_allclose([gated[m]["positive_share"] for m in names], (values >= 0.5).mean(axis=0))
    # the data-driven split sees one population and takes only its upper tail
    assert all(r["positive_share"] < 0.1 for r in table(ScoringParams()).values())
    # a ruleset's threshold line still wins over the gate
    lined = table(ScoringParams(positivity="gate"), thresholds={"A": (">", 0.9)})
    assert lined["A"]["threshold"] == 0.9 and lined["B"]["threshold"] == 0.5


def _scimap_layer(seed: int = 4):
    """Four markers rescaled around gates set inside their one population, and a fifth whose gate
    lies above every cell (scimap maps it onto 0..0.5); two clusters that differ in marker A."""
    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng(seed)
    values = _rescaled_around_gates(rng, 4000, 4)
    x = rng.normal(5.0, 1.0, 4000)
    values = np.c_[values, 0.5 * (x - x.min()) / (x.max() - x.min())]
    adata = ad.AnnData(values.astype(np.float32))
    adata.var_names = ["A", "B", "C", "D", "E"]
    adata.obs["cluster"] = pd.Categorical(np.where(values[:, 0] >= 0.5, "a_high", "a_low"))
    return adata


def test_auto_positivity_cuts_a_layer_rescaled_around_gates_at_the_gate():
    """The rescale is recognised by marker E (it ends at 0.5), even though the ruleset never uses E."""
    import ctr
    from ctr.lang import compile_ruleset

    adata = _scimap_layer()
    ruleset = compile_ruleset("r.ctr", text='type "A cells" { markers A }\ntype "B cells" { markers B }\n').ruleset
    result = ctr.annotate(adata, ruleset, cluster_key="cluster", skip_refinement=True, write_obs=False)
    profile = result.provenance["data_profile"]
    assert (profile["kind"], profile["gate"], list(profile["ungated"])) == ("gate_rescaled", 0.5, ["E"])
    assert [d.code for d in result.diagnostics] == ["CTR518"]
    table = result.thresholds.set_index("marker")
    for marker in ("A", "B"):
        assert (table.loc[marker, "threshold"], table.loc[marker, "threshold_method"]) == (0.5, "rescaled")
        assert table.loc[marker, "threshold_source"] == "auto"
        # the gate's phenotype (40% at or above it), not the upper tail of one population
        assert table.loc[marker, "positive_share"] == pytest.approx((adata[:, marker].X >= 0.5).mean())
    assert result.clusters.set_index("cluster").loc["a_high", "final_annotation"] == "A cells"


def test_min_max_scaled_layer_keeps_the_data_driven_split():
    """Every marker ending at exactly 1 is plain min-max scaling as much as a rescale: no gate is
    assumed (the warning CTR517 says what to do if the values were rescaled around gates)."""
    import ctr
    from ctr.lang import compile_ruleset

    adata = _scimap_layer()[:, ["A", "B", "C", "D"]].copy()
    ruleset = compile_ruleset("r.ctr", text='type "A cells" { markers A }\ntype "B cells" { markers B }\n').ruleset
    result = ctr.annotate(adata, ruleset, cluster_key="cluster", skip_refinement=True, write_obs=False)
    assert result.provenance["data_profile"]["gate"] is None
    assert [d.code for d in result.diagnostics] == ["CTR517"]
    assert result.thresholds.set_index("marker").loc["A", "threshold_method"] != "rescaled"


@pytest.mark.parametrize("share", [0.30, 0.65])
def test_counts_on_a_linear_scale_are_split_on_the_log_scale(share):
    # size-normalised ion counts (MIBI): background of a fraction of a count (most cells read 0),
    # stained cells lognormal around 10 counts (cells and regions differ: log SD 0.6);
    # untransformed, so the stained population's right tail swamps a fit on the linear scale
    # (which read one population: a tail or "detected" split)
    rng = np.random.default_rng(3)
    truth = rng.random(N) < share
    area = rng.lognormal(0.0, 0.35, N)
    level = np.where(truth, 10.0, 0.3) * rng.lognormal(0.0, 0.6, N)
    values = rng.poisson(level * area) / area
    split = find_split(values)
    pos = called(values, split)
    assert split.method == "log_mixture"
    assert abs(pos.mean() - share) <= 0.03
    assert truth[pos].mean() >= 0.95


def test_background_counts_at_detection_level_are_not_positive():
    # size-normalised ion counts of a rare marker: a third of all cells read one or two background
    # counts, 5% are stained at ~15 counts. The detected values start at the one-count level (as
    # RNA detections do), but the stained cells lie 4-fold and more above them: only they are positive
    rng = np.random.default_rng(4)
    truth = rng.random(N) < 0.05
    area = rng.lognormal(0.0, 0.3, N)
    level = np.where(truth, 15.0 * rng.lognormal(0.0, 0.5, N), 0.35)
    values = rng.poisson(level * area) / area
    split = find_split(values)
    pos = called(values, split)
    assert split.method == "log_mixture"
    assert abs(pos.mean() - 0.05) <= 0.01
    assert truth[pos].mean() >= 0.95

