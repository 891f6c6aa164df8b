"""Win-loss counts, Bradley–Terry, Plackett–Luce and Elo rankings, intervals, active pairs, annotator quality,
rewards, stopping rules, a sentinel for reward hacking and a judge blended with people.

numpy and scipy only. Every function takes votes as an (m, 2) array of ``(winner, loser)`` datapoint
indices (an optional third column flags ties) or as an n × n win matrix, and returns numpy arrays.
"""

from ._absolute import AbsoluteResult, absolute_counts, absolute_votes, fit_absolute, simulate_absolute
from ._active import pair_utilities, select_pairs, select_pairs_uniform
from ._agreement import PairAgreement, Transitivity, repeated_pair_agreement, transitivity_violations
from ._bradley_terry import DEFAULT_PRIOR, BradleyTerryResult, elo_from_scores, fit_bradley_terry
from ._counts import PairCounts, WinLossCounter, comparisons_from_keys, pair_counts, win_matrix
from ._elo import ARENA_ELO, EloResult, elo_ratings
from ._intervals import rank_ranges
from ._judge import (
    AgreementModel,
    JudgeBlendResult,
    agreement_interval,
    fit_agreement_model,
    fit_judge_bradley_terry,
    judge_log_posterior,
)
from ._krippendorff import krippendorff_alpha
from ._labels import LabelConsensus, dawid_skene
from ._live import LiveBradleyTerry
from ._plackett_luce import PlackettLuceResult, fit_plackett_luce, implied_pairs
from ._quality import (
    AnnotatorQuality,
    CrowdBradleyTerryResult,
    annotator_quality,
    consensus_agreement,
    fit_crowd_bradley_terry,
    gold_agreement,
)
from ._rewards import rewards_from_result, rewards_from_scores, rewards_from_wins
from ._sentinel import Divergence, check_divergence, mann_kendall, theil_sen_slope, win_rate_trend
from ._simulate import (
    PolicyRun,
    simulate_comparisons,
    simulate_crowd_votes,
    simulate_policy_run,
    simulate_scores,
    simulate_win_votes,
)
from ._stopping import STOP_RULES, Settlement, settlement

__all__ = [
    "ARENA_ELO",
    "DEFAULT_PRIOR",
    "STOP_RULES",
    "AbsoluteResult",
    "AgreementModel",
    "AnnotatorQuality",
    "BradleyTerryResult",
    "CrowdBradleyTerryResult",
    "Divergence",
    "EloResult",
    "JudgeBlendResult",
    "LabelConsensus",
    "LiveBradleyTerry",
    "PairAgreement",
    "PairCounts",
    "PlackettLuceResult",
    "PolicyRun",
    "Settlement",
    "Transitivity",
    "WinLossCounter",
    "absolute_counts",
    "absolute_votes",
    "agreement_interval",
    "annotator_quality",
    "check_divergence",
    "comparisons_from_keys",
    "consensus_agreement",
    "dawid_skene",
    "elo_from_scores",
    "elo_ratings",
    "fit_absolute",
    "fit_agreement_model",
    "fit_bradley_terry",
    "fit_crowd_bradley_terry",
    "fit_judge_bradley_terry",
    "fit_plackett_luce",
    "gold_agreement",
    "implied_pairs",
    "judge_log_posterior",
    "krippendorff_alpha",
    "mann_kendall",
    "pair_counts",
    "pair_utilities",
    "rank_ranges",
    "repeated_pair_agreement",
    "rewards_from_result",
    "rewards_from_scores",
    "rewards_from_wins",
    "select_pairs",
    "select_pairs_uniform",
    "settlement",
    "simulate_absolute",
    "simulate_comparisons",
    "simulate_crowd_votes",
    "simulate_policy_run",
    "simulate_scores",
    "simulate_win_votes",
    "theil_sen_slope",
    "transitivity_violations",
    "win_matrix",
    "win_rate_trend",
]
