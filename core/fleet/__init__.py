"""Watching a fleet of model servers: per-replica and fleet QPS, latency, errors, batches, versions.

May import core.client, core.metrics, core.wire, core.config and core.identity.
"""
