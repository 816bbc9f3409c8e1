"""Inside an Azure ML job, Key Vault and az:// stores are read with the job's own identity."""

from __future__ import annotations

from launcher.azure_identity import IDENTITY_VARIABLE, USER_IDENTITY, job_credential


def test_a_user_identity_job_uses_the_on_behalf_of_credential() -> None:
    assert type(job_credential({IDENTITY_VARIABLE: USER_IDENTITY})).__name__ == "AzureMLOnBehalfOfCredential"


def test_a_user_assigned_identity_is_chosen_by_its_client_id() -> None:
    credential = job_credential({"AZURE_CLIENT_ID": "00000000-0000-0000-0000-0000000000aa"})
    managed = [c for c in credential.credentials if type(c).__name__ == "ManagedIdentityCredential"]
    assert managed and managed[0]._credential._settings["client_id"] == "00000000-0000-0000-0000-0000000000aa"


def test_otherwise_the_default_chain() -> None:
    assert type(job_credential({})).__name__ == "DefaultAzureCredential"


def test_az_stores_in_a_user_identity_job_use_the_jobs_identity() -> None:
    from launcher.storage.azure import default_client

    client = default_client({"AZURE_STORAGE_ACCOUNT": "acct", IDENTITY_VARIABLE: USER_IDENTITY})
    assert client.url.startswith("https://acct.blob.core.windows.net")
    assert type(client.credential).__name__ == "AzureMLOnBehalfOfCredential"
