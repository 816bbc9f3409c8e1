"""The Azure credential a job uses inside the container, chosen by how the job runs.

Azure ML runs a command job as one of three identities (the job's `identity`):

- `user_identity`: the submitting user's identity, available inside the job only
  through AzureMLOnBehalfOfCredential (azure-ai-ml); DefaultAzureCredential does
  not see it. https://learn.microsoft.com/azure/machine-learning/how-to-read-write-data-v2#access-data-using-user-identity
- a user-assigned managed identity: DefaultAzureCredential picks it when
  AZURE_CLIENT_ID holds its client id (the backend sets that variable).
- the compute's own managed identity (or, outside Azure ML, a developer login or
  a service principal in the environment): DefaultAzureCredential.

The backend writes the choice into the job's environment as IDENTITY_VARIABLE,
so Key Vault secrets and az:// stores are read with the job's own identity.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

from launcher.lazy import require

__all__ = ["IDENTITY_VARIABLE", "USER_IDENTITY", "job_credential"]

IDENTITY_VARIABLE = "LAUNCHER_AZURE_IDENTITY"
USER_IDENTITY = "user_identity"


def job_credential(environ: Mapping[str, str] | None = None) -> Any:
    """AzureMLOnBehalfOfCredential for a user_identity job, else DefaultAzureCredential (AZURE_CLIENT_ID aware)."""
    environ = os.environ if environ is None else environ
    if environ.get(IDENTITY_VARIABLE) == USER_IDENTITY:
        return require("azure.ai.ml.identity", "azure").AzureMLOnBehalfOfCredential()
    identity = require("azure.identity", "azure")
    client_id = environ.get("AZURE_CLIENT_ID")
    return (
        identity.DefaultAzureCredential(managed_identity_client_id=client_id)
        if client_id
        else identity.DefaultAzureCredential()
    )
