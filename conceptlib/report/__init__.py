"""Report: recorded results, statistics, the scorecard of the paper's claims,
tables and figures. The names chapters use are here; figures (matplotlib) are
in :mod:`~conceptlib.report.plots`, imported on its own.

- :mod:`~conceptlib.report.records`: the recorded results (``recorded("quick")``);
- :mod:`~conceptlib.report.stats`: estimates over seeds and the noise rule;
- :mod:`~conceptlib.report.scorecard`: the verdicts on the paper's claims;
- :mod:`~conceptlib.report.text`, :mod:`~conceptlib.report.tables`: tables;
- :mod:`~conceptlib.report.compare`: two recorded runs side by side.
"""

# ruff: noqa: F401  (the names re-exported for the chapters)
from conceptlib.report import scorecard
from conceptlib.report.records import (
    recorded,
    recorded_checkpoint,
    recorded_loop_speed,
    recorded_loop_speeds,
    recorded_path,
    recorded_runs,
)
from conceptlib.report.stats import Estimate, Z, estimate, plural
from conceptlib.report.tables import markdown_table, plus_minus
from conceptlib.report.text import (
    compare_phrase,
    format_clustering,
    format_headline,
    format_plan,
    headline,
    near,
)
