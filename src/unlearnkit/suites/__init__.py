"""Benchmark suites: a task's data and metric run over seeds, methods and hyperparameter grids.

One module per suite (``sine_poisoning``); :mod:`~unlearnkit.suites.trials` holds the
over-seeds summaries and the selection rule they share.
"""
