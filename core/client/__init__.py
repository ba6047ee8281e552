"""Talking to model servers: channel, ServingClient, batcher, monitor, scrapes, targets, codes.

May import core.wire, core.metrics and core.config.
"""
