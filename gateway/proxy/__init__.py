"""The request path: thin handlers, the attempt loop, upstream HTTP, the stream relay and tee, the
compiled runtime snapshot, and the server that runs it.
"""
