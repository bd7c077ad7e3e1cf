"""What every layer shares: the request context, errors, the stage pipeline, SSE, the Feature
interface, the outcome, the request body, tokens and prices.
"""
