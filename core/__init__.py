"""The engine of deepchat-tfs: no Textual and no TensorFlow runtime.

Rooms, lowest first: wire, metrics, config, embedded; client; load, chat; report; bench.
"""
