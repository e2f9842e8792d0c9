"""Experiment: the pipeline that trains the variants and measures them, the
reproduction of the paper that records ``metrics.json``, and the concept-loss sweep.
"""
