"""Evaluation on held-out tasks: the adaptation protocol, baselines, reports."""
