"""Secret references, resolved inside the container.

A job spec lists secret NAMES. Cloud backends never put a secret's value in
the request: at submit time they store the value in the cloud's own secret
service and pass the container only a reference, in the environment variable
LAUNCHER_SECRET_REFS (JSON: {"NAME": "reference"}). The entrypoint resolves
each reference here, into the environment of the training processes only.

Reference forms:
    aws-sm:<secret id or ARN>            AWS Secrets Manager
    aws-ssm:<parameter name>             AWS SSM Parameter Store (SecureString)
    gcp-sm:projects/P/secrets/S/versions/V   GCP Secret Manager
    azure-kv:https://VAULT.vault.azure.net/secrets/NAME   Azure Key Vault
    env:<NAME>                           already in the environment (local backend)
"""

from __future__ import annotations

import json
from typing import Callable, Mapping

from launcher.contract import SECRET_REFS_VARIABLE
from launcher.errors import LauncherError
from launcher.lazy import require

__all__ = ["REFS_VARIABLE", "resolve_environment", "resolve", "RESOLVERS"]

REFS_VARIABLE = SECRET_REFS_VARIABLE  # the name and the schemes are the container contract's


def _aws_secrets_manager(ref: str, environ: Mapping[str, str]) -> str:
    boto3 = require("boto3", "aws")
    client = boto3.client("secretsmanager", region_name=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION"))
    return client.get_secret_value(SecretId=ref)["SecretString"]


def _aws_ssm(ref: str, environ: Mapping[str, str]) -> str:
    boto3 = require("boto3", "aws")
    client = boto3.client("ssm", region_name=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION"))
    return client.get_parameter(Name=ref, WithDecryption=True)["Parameter"]["Value"]


def _gcp_secret_manager(ref: str, environ: Mapping[str, str]) -> str:
    secretmanager = require("google.cloud.secretmanager", "gcp")
    client = secretmanager.SecretManagerServiceClient()
    return client.access_secret_version(name=ref).payload.data.decode("utf-8")


def _azure_key_vault(ref: str, environ: Mapping[str, str]) -> str:
    from launcher.azure_identity import job_credential  # noqa: PLC0415 - the job's own identity, not the node's

    keyvault = require("azure.keyvault.secrets", "azure")
    vault, _, name = ref.partition("/secrets/")
    client = keyvault.SecretClient(vault_url=vault, credential=job_credential(environ))
    return client.get_secret(name.split("/")[0]).value


def _env(ref: str, environ: Mapping[str, str]) -> str:
    if ref not in environ:
        raise LauncherError(f"Secret {ref} is not set in the environment.", f"Export {ref} before launching.")
    return environ[ref]


RESOLVERS: dict[str, Callable[[str, Mapping[str, str]], str]] = {
    "aws-sm": _aws_secrets_manager,
    "aws-ssm": _aws_ssm,
    "gcp-sm": _gcp_secret_manager,
    "azure-kv": _azure_key_vault,
    "env": _env,
}


def resolve(ref: str, environ: Mapping[str, str]) -> str:
    scheme, sep, rest = ref.partition(":")
    if not sep or scheme not in RESOLVERS:
        raise LauncherError(
            f"Unknown secret reference '{ref}'.", f"Use one of: {', '.join(RESOLVERS)} followed by ':'."
        )
    return RESOLVERS[scheme](rest, environ)


def resolve_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """NAME -> value for every reference in LAUNCHER_SECRET_REFS."""
    refs = json.loads(environ.get(REFS_VARIABLE) or "{}")
    return {name: resolve(ref, environ) for name, ref in refs.items()}
