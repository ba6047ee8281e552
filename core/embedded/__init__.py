"""Starting the embedded server as a child process and the ready-line protocol it answers with.

Imports nothing else from core (server/ imports the protocol from here).
"""
