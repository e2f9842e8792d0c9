"""Report: recorded results (``records``), estimates over seeds and the noise rule
(``stats``), verdicts on the paper's claims (``scorecard``), tables (``text``,
``tables``), two runs side by side (``compare``); the names chapters use are here.
Figures (matplotlib) are in :mod:`~conceptlib.report.plots`, imported on its own."""

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
