"""Progress bars inside long stages: drawn with the time left on a terminal, silent otherwise."""

from __future__ import annotations

import io

import numpy as np

from ctr.data.cluster import cluster_cells
from ctr.progress import Progress, steps


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_steps_draw_a_bar_with_time_left_on_a_terminal():
    stream = Terminal()
    progress = Progress(stream=stream, bar_delay=0, bar_interval=0)
    with progress.stage("statistics"):
        with steps(3, "statistics", unit="marker") as advance:
            for _ in range(3):
                advance(1)
    text = stream.getvalue()
    assert "ctr: statistics" in text and "3/3" in text and "<" in text  # tqdm's [elapsed<remaining]


def test_steps_are_silent_off_a_terminal_and_outside_a_command():
    stream = io.StringIO()
    progress = Progress(stream=stream, bar_delay=0, bar_interval=0)
    with progress.stage("cluster"):
        with steps(3, "cluster") as advance:
            advance(3)
    assert "3/3" not in stream.getvalue()
    with steps(3, "cluster") as advance:  # no stage running: called from Python, nothing is printed
        advance(3)


def test_clustering_reports_its_steps_and_explains_the_compile_time_only_where_there_is_one(monkeypatch):
    import ctr.data.cluster

    rng = np.random.default_rng(0)
    matrix = np.vstack([rng.normal(m, 0.3, size=(60, 6)) for m in (0, 3, 6)])

    def cluster_and_show() -> str:
        monkeypatch.setattr(ctr.data.cluster, "_COMPILED", False)  # as in a fresh process
        stream = Terminal()
        progress = Progress(stream=stream, bar_delay=0, bar_interval=0)
        with progress.stage("cluster"):
            cluster_cells(matrix, use_gpu=False, progress=progress, compute_umap=False)
        return stream.getvalue()

    small = cluster_and_show()  # exact neighbours, numpy connectivities: nothing is compiled
    assert "ctr: cluster" in small and "4/4" in small
    assert "compiling" not in small
    monkeypatch.setattr(ctr.data.cluster, "EXACT_KNN_MAX_CELLS", 100)  # as if the input were large
    assert "compiling its numba code" in cluster_and_show()


def test_statistics_and_refinement_report_through_the_running_stage(pbmc_h5ad):
    import anndata as ad

    from ctr import api

    adata = ad.read_h5ad(pbmc_h5ad)
    stream = Terminal()
    progress = Progress(stream=stream, bar_delay=0, bar_interval=0)
    with progress.stage("annotate"):
        api.annotate(adata, "pbmc", cluster_key="louvain", write_obs=False)
    text = stream.getvalue()
    assert "ctr: statistics" in text and "marker" in text
    assert "ctr: refinement round 1" in text and "cluster" in text
