"""Built-in backends, one module each: local, aws (SageMaker), gcp (Vertex AI), azure (Azure ML).

registry.py finds them; cloud.py holds what the three clouds share. They
are registered as entry points in the group `launcher.backends` (see
pyproject.toml), exactly like third-party backends. A backend module imports
only pydantic and the launcher core at module level; its SDK is imported
lazily inside the methods that talk to the service.
"""
