"""Generating load: specs, schedules, the open/closed-loop generator, workers, inputs, REST.

May import core.client, core.wire, core.metrics and core.config.
"""
