"""The built-in deterministic ``mock`` provider: OpenAI-shaped answers decided from the request
alone, with OpenAI's 400s.
"""
