"""Chatting with a served model: adapters per signature kind, the transcript, the chat session.

May import core.client, core.wire, core.metrics, core.config and core.embedded.
"""
