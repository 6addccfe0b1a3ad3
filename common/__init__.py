"""Shared code for the paper reproductions: data, models, training, evaluation."""
