"""Keeping classifiers honest: metrics, golden sets, experiments and the evaluation report."""
