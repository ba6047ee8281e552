"""TF Serving's wire formats: protos without the TF runtime, tensors, REST JSON, model specs.

Pure data conversion; imports nothing else from core.
"""
