"""The load tools and client patterns `bench_peers` measures beside `deepchat-tfs bench`.

Echo targets, each peer's command line and output parser, and the runner that measures a peer's
CPU per request and what it sees of a server freeze. Nothing here imports TensorFlow.
"""
