"""Experiment: the pipeline (its data in ``data``, its measures in ``measures``) that
trains the variants and measures them, the reproduction of the paper that records
``metrics.json``, the concept-loss sweep, and ``conceptlib edit`` (``editing``: one
image through a chain of operators).
"""
