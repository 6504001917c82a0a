"""Training: a task-agnostic fit/evaluate loop; tasks supply loss and metrics."""
from leannet.train.fit import evaluate, fit
from leannet.train.tasks import ClassificationTask, task_for

__all__ = ["ClassificationTask", "evaluate", "fit", "task_for"]
