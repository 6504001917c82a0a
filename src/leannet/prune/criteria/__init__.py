"""Channel importance: Criterion objects in a registry (ten built-ins), or any callable.

    Pruner(model, x, criterion="group_l1")            # a registered name
    Pruner(model, x, criterion=MyCriterion())          # a Criterion subclass instance
    Pruner(model, x, criterion=lambda group, model: scores)

`base` holds the interface, the per-group Scorer and the registry; `weights` the weight criteria
(l1, l2, fpgm, bn_scale, random, group_l1, group_l2); `data` the data criteria (mean_activation,
apoz, taylor) and calibration.
"""
from leannet.prune.criteria.base import (
                                         CallableCriterion,
                                         Criterion,
                                         Scorer,
                                         check_criterion,
                                         criterion_names,
                                         get_criterion,
                                         register_criterion,
)
from leannet.prune.criteria.data import ActivationStats, calibrate, split_batch
from leannet.prune.criteria.weights import GroupMagnitude, RowCriterion

CRITERIA = criterion_names()              # the built-in names
DATA_CRITERIA = criterion_names(data=True)
WEIGHT_CRITERIA = criterion_names(data=False)

__all__ = ["Criterion", "CallableCriterion", "RowCriterion", "GroupMagnitude", "Scorer",
           "ActivationStats", "calibrate", "check_criterion", "criterion_names", "get_criterion",
           "register_criterion", "split_batch", "CRITERIA", "DATA_CRITERIA", "WEIGHT_CRITERIA"]
