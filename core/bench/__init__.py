"""Bench runs that the CLI and the console's burst screen share: set-up, find-max and sweeps.

May import core.report, core.load and the rooms below them.
"""
