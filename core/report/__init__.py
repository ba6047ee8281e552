"""Bench reports: the JSON model, text and Markdown rendering, SLO checks.

May import core.load and the rooms below it.
"""
