"""Report: recorded results, statistics, the scorecard of the paper's claims,
tables and figures.

- :mod:`~conceptlib.report.text`: reading recorded ``metrics.json``, tables, and
  numbers checked against their record (``near``);
- :mod:`~conceptlib.report.scorecard`: estimates over seeds and the verdicts;
- :mod:`~conceptlib.report.compare`: two recorded runs side by side;
- :mod:`~conceptlib.report.plots`: the figures.
"""
