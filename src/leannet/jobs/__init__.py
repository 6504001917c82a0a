"""Jobs: a model folder plus a data source plus checks, run for one command (train, prune, deploy, demo).

Each job is a dataclass of plain options and a `run_*` function; the CLI only parses options into
a job and prints what the run returns, so the Python API and the command line do the same work.
"""
