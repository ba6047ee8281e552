"""Talking to model servers: grpc.aio channel, ServingClient, micro-batcher, monitor, scrapes.

May import core.wire, core.metrics and core.config.
"""
