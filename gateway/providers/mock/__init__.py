"""The built-in deterministic ``mock`` provider: OpenAI-shaped answers decided from the request
alone, with OpenAI's 400s. ``provider.MockProvider`` is its entry in the provider registry;
``backend.build_mock_app`` serves the same answers over HTTP (``llm-gateway mock-server``).
"""
