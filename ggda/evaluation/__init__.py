"""Evaluation of attributions by removal and retraining (docs/methods.md), and two uses of them.

=========================  ==================================================================================
function                   what it measures
=========================  ==================================================================================
retraining_score           remove the top p% most important points for T, retrain R seeds, accuracy/loss on T
baseline_scores            the same for no removal and random removal only (once per model, for every method)
pruning                    remove the p% least important points for a validation split, retrain, test accuracy
noisy_label_detection      AUROC and detection curve of self-influence (or validation) suspicion, then cleaning
lds, lds_many              linear datamodeling score over groups (Spearman of predicted vs retrained losses);
                           lds_many scores several attributions of one grouping from the same retrained subsets
validation_split           carve a clean, class-stratified validation split out of the training part
self_influence             group self-influence S(G) = sum_{i in G} score(z_i, G) for if, tracin, trak
=========================  ==================================================================================

Every retraining table is tidy, one row per retrained model, with the columns :data:`ROW_COLUMNS`
(kind, fraction, seed, n_removed, accuracy, loss, retrain_s); ``EvalResult.summary()`` gives the mean
and standard error over seeds per kind x fraction.

    import ggda
    from ggda import evaluation
    data = ggda.data.load("breast_cancer")
    run = ggda.train.fit("lr", data)
    attr = ggda.attribute("if", run, data.train, data.test)
    res = evaluation.retraining_score(run, data, attr.importance(), fractions=(0.1, 0.2), seeds=(0, 1, 2))
    res.summary()
"""

from ..attribution import SelfInfluence, self_influence
from ..data.prepare import validation_split
from .lds import lds, lds_many, spearman_columns
from .noisy import detection_auroc, detection_curve, noisy_label_detection, suspicion_scores
from .results import ROW_COLUMNS, SUMMARY_COLUMNS, EvalResult, LDSResult, NoisyLabelResult, summarise
from .retraining import (as_importance, baseline_scores, per_target_loss, pruning, random_removal, removal_order,
                         retraining_score)

__all__ = ["retraining_score", "baseline_scores", "pruning", "noisy_label_detection", "lds", "lds_many", "validation_split", "self_influence",
           "SelfInfluence", "EvalResult", "NoisyLabelResult", "LDSResult", "ROW_COLUMNS", "SUMMARY_COLUMNS",
           "summarise", "removal_order", "random_removal", "as_importance", "per_target_loss",
           "detection_auroc", "detection_curve", "suspicion_scores", "spearman_columns"]
