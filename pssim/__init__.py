"""pssim: a discrete-event simulator of parameter-server training, and the shared scenario format.

`import pssim` never imports torch: the simulator, the scenario schema, the result records and
the planner run on a laptop. The real backend lives in `psreal` and reuses this package's
schema, sharding, sync rules, link model and `summarize`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .records import Records, summarize
from .scenario import Scenario, ScenarioError, load_scenario

__all__ = ["Records", "Scenario", "ScenarioError", "load_scenario", "summarize", "__version__"]
