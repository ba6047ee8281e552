"""Bench reports: the JSON model, text, SLO checks, merging, exports, pushes, server figures.

May import core.load and the rooms below it.
"""
