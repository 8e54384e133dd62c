"""The rules interpreter: score and gate every cell type, decide per cluster, trace every step."""

from ctr.engine.annotate import Annotation, annotate_clusters, evaluate_nodes
from ctr.engine.conditions import Context, Evaluated, evaluate, evaluation_tree
from ctr.engine.decide import UNASSIGNED, Decision, decide_cluster
from ctr.engine.scoring import ClusterEvidence, score_node

__all__ = [
    "UNASSIGNED", "Annotation", "ClusterEvidence", "Context", "Decision", "Evaluated", "annotate_clusters",
    "decide_cluster", "evaluate", "evaluate_nodes", "evaluation_tree", "score_node",
]
