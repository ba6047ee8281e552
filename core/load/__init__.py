"""Generating load: specs and schedules, the open/closed-loop generator, worker processes, inputs.

May import core.client, core.wire, core.metrics and core.config.
"""
