"""Measuring requests: HDR latency histograms, the console's StatsCollector, load-run recording.

Imports nothing else from core.
"""
