"""Experiment: the pipeline (its data in ``data``, its measures in ``measures``) that
trains the variants and measures them, the reproduction of the paper that records
``metrics.json``, and the concept-loss sweep.
"""
