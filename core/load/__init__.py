"""Generating load: specs, schedules, the generator, workers, inputs, REST and gRPC clients.

May import core.client, core.wire, core.metrics and core.config.
"""
