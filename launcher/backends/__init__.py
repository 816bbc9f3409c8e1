"""Built-in backends, one module each: local, aws (SageMaker), gcp (Vertex AI), azure (Azure ML).

This folder installs as the package `launcher.backends` (pyproject.toml's
package-dir), so the project claims no generic top-level import name. They
are registered as entry points in the group `launcher.backends` (see
pyproject.toml), exactly like third-party backends. A backend module imports
only pydantic and the launcher core at module level; its SDK is imported
lazily inside the methods that talk to the service.
"""
