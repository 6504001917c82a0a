"""Training: a task-agnostic fit/evaluate loop; tasks supply loss and metrics."""
