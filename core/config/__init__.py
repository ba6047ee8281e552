"""The console's configuration: pydantic schema, YAML loader (file:line errors), README reference.

Imports nothing else from core.
"""
