"""Running trees: the Runner (process-wide), one TreeRun per running tree."""

from application.runner.runner import Runner, TreeBusy
from application.runner.tree_run import RunStalled, TreeRun

__all__ = ["RunStalled", "Runner", "TreeBusy", "TreeRun"]
