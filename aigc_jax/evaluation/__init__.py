"""Evaluation: per-image fidelity, feature extractors, feature-distribution metrics,
hallucination rates, mode-collapse metrics, rejection filtering and estimator calibration;
the one measurement layer both `experiments.evaluate` and the hallucination benchmark use:
`reference` (real sets and floors), `sampling`, `evaluators` (rates under canonical names)."""

from aigc_jax.evaluation.calibration import CalibrationStatistics
from aigc_jax.evaluation.calibration import calibration_statistics
from aigc_jax.evaluation.calibration import calibration_table
from aigc_jax.evaluation.calibration import pearson_correlation
from aigc_jax.evaluation.calibration import spearman_correlation
from aigc_jax.evaluation.distribution import density_coverage
from aigc_jax.evaluation.distribution import frechet_distance
from aigc_jax.evaluation.distribution import frechet_distance_from_statistics
from aigc_jax.evaluation.distribution import gaussian_statistics
from aigc_jax.evaluation.distribution import kernel_inception_distance
from aigc_jax.evaluation.distribution import knn_radii
from aigc_jax.evaluation.distribution import manifold_membership
from aigc_jax.evaluation.distribution import precision_recall
from aigc_jax.evaluation.distribution import realism_score
from aigc_jax.evaluation.evaluators import SAMPLE_EVALUATORS
from aigc_jax.evaluation.evaluators import SampleSet
from aigc_jax.evaluation.evaluators import reconstruction_rates
from aigc_jax.evaluation.evaluators import sample_rates
from aigc_jax.evaluation.evaluators import sample_set
from aigc_jax.evaluation.features import ClassifierFeatureExtractor
from aigc_jax.evaluation.features import FeatureExtractor
from aigc_jax.evaluation.features import IdentityFeatureExtractor
from aigc_jax.evaluation.fidelity import ms_ssim
from aigc_jax.evaluation.fidelity import ms_ssim_min_size
from aigc_jax.evaluation.fidelity import ms_ssim_weights
from aigc_jax.evaluation.fidelity import mse
from aigc_jax.evaluation.fidelity import psnr
from aigc_jax.evaluation.fidelity import ssim
from aigc_jax.evaluation.filtering import FilteringCurve
from aigc_jax.evaluation.filtering import classifier_confidence
from aigc_jax.evaluation.filtering import filtering_curve
from aigc_jax.evaluation.filtering import manifold_realism_score
from aigc_jax.evaluation.filtering import threshold_keeping_valid
from aigc_jax.evaluation.hallucination import RateEstimate
from aigc_jax.evaluation.hallucination import SupportCheck
from aigc_jax.evaluation.hallucination import control_error_rate
from aigc_jax.evaluation.hallucination import manifold_hallucination_rate
from aigc_jax.evaluation.hallucination import rate_from_flags
from aigc_jax.evaluation.hallucination import reconstruction_class_flip_rate
from aigc_jax.evaluation.hallucination import support_hallucination_rate
from aigc_jax.evaluation.hallucination import unrecognisable_rate
from aigc_jax.evaluation.hallucination import wilson_interval
from aigc_jax.evaluation.mode_collapse import ModeCollapseMetrics
from aigc_jax.evaluation.mode_collapse import mode_collapse_metrics
from aigc_jax.evaluation.mode_collapse import nearest_mode
from aigc_jax.evaluation.mode_collapse import reverse_kl_to_uniform
from aigc_jax.evaluation.reference import Reference
from aigc_jax.evaluation.reference import build_reference
from aigc_jax.evaluation.statistics import mean_and_standard_error
from aigc_jax.evaluation.statistics import DifferenceInterval
from aigc_jax.evaluation.statistics import difference_verdict
from aigc_jax.evaluation.statistics import welch_difference_interval
