"""Evaluation: exact rank metrics, streaming evaluation from features, protocols, re-ranking.

* :func:`evaluate_rank`: CMC / mAP / mINP from a query x gallery distance matrix.
* :func:`evaluate_features`: the same numbers from features, exact, without the matrix.
* :func:`evaluate_protocol`: the right protocol for each dataset (VehicleID trials too).
* :func:`rerank_features`: k-reciprocal re-ranking, for :func:`evaluate_rank`.
* :func:`markdown_table`, :func:`write_results_json`: reporting.
"""

from pgan.evaluation.metrics import NoMatchWarning, RankResult, evaluate_rank
from pgan.evaluation.protocols import ProtocolResult, evaluate_protocol, evaluate_vehicleid, vehicleid_trials
from pgan.evaluation.report import markdown_table, write_results_json
from pgan.evaluation.rerank import rerank_features
from pgan.evaluation.streaming import evaluate_features

__all__ = ["NoMatchWarning", "ProtocolResult", "RankResult", "evaluate_features", "evaluate_protocol",
           "evaluate_rank", "evaluate_vehicleid", "markdown_table", "rerank_features",
           "vehicleid_trials", "write_results_json"]
