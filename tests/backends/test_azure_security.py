"""Azure ML security (issue 33): every argument of the command text shell-quoted, only the launcher's own
`${{...}}` placeholders left to Azure ML; Key Vault URLs only on Key Vault hosts over https."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from launcher.backends.azure import AzureMLBackend
from launcher.errors import LauncherError, SpecError
from launcher.spec import validate_spec

WS = {"subscription_id": "00000000-1111-2222-3333-444444444444", "resource_group": "ml-rg", "workspace": "vision-ws",
      "storage_account": "visiondata"}  # fmt: skip
BASE: dict[str, Any] = {"name": "digits", "image": "wsacr123.azurecr.io/launcher/train:1",
                        "train": {"data": "az://datasets/digits"}, "checkpoint": {"uri": "azureml://datastores/ck/paths/runs"},
                        "azure": WS}  # fmt: skip


def _command(**changes: Any) -> str:
    spec = validate_spec({**BASE, **changes}, Path("job.yaml"), Path("/srv"))
    return str(AzureMLBackend().plan(spec, job_id="job-1").request()["command"])


def _run_as_azure_would(command: str, tmp_path: Path) -> None:
    """Azure ML replaces the placeholders in the text with the mount folders, then a shell runs it; `python`
    here is a shell function that does nothing, so only an injected command could touch anything."""
    text = command.replace("${{inputs.data}}", "/mnt/azureml/data").replace(
        "${{outputs.checkpoints}}", "/mnt/azureml/ck"
    )
    subprocess.run(["sh", "-c", f"python() {{ :; }}; {text}"], cwd=tmp_path, check=True, timeout=30)


@pytest.mark.parametrize(
    "payload",
    [
        "${{inputs.data}}; touch pwned",
        "$(touch pwned)",
        "`touch pwned`",
        "${{outputs.checkpoints}}|touch pwned",
        "a'; touch pwned; '",
    ],
)
def test_a_command_argument_cannot_inject_into_the_nodes_shell(payload: str, tmp_path: Path) -> None:
    command = _command(command=["echo", payload])
    _run_as_azure_would(command, tmp_path)
    assert not (tmp_path / "pwned").exists(), command


def test_the_launchers_placeholders_stay_outside_the_quotes(tmp_path: Path) -> None:
    command = _command(command=["echo", "--data=${{inputs.data}}"])
    assert "'--data='${{inputs.data}}" in command or "--data=${{inputs.data}}" in command
    assert "--checkpoint-uri '${{outputs.checkpoints}}'" not in command
    trainer = _command()
    assert "data=${{inputs.data}}" in trainer and "${{outputs.checkpoints}}" in trainer


@pytest.mark.parametrize("arg", ["${{inputs.other}}", "${{outputs.checkpoints}}${{inputs.x}}", "${{ inputs.data }}"])
def test_other_azure_expressions_are_refused(arg: str) -> None:
    with pytest.raises(LauncherError, match=r"command: the argument .* Azure ML expression"):
        _command(command=["echo", arg])


@pytest.mark.parametrize(
    "vault",
    [
        "https://attacker.example.com",
        "http://vision-kv.vault.azure.net",
        "https://vision-kv.vault.azure.net.attacker.com",
        "https://a@vision-kv.vault.azure.net",
        "https://vision-kv.vault.azure.net/x",
        "ftp://vision-kv.vault.azure.net",
    ],
)
def test_key_vault_is_only_a_key_vault_host_over_https(vault: str) -> None:
    spec = validate_spec(
        {**BASE, "secrets": ["TOKEN"], "azure": {**WS, "key_vault": vault}}, Path("job.yaml"), Path("/srv")
    )
    with pytest.raises(SpecError, match="azure.key_vault"):
        AzureMLBackend().plan(spec)


@pytest.mark.parametrize(
    "vault",
    [
        "vision-kv",
        "https://vision-kv.vault.azure.net",
        "https://vision-kv.vault.azure.cn/",
        "https://vision-kv.vault.usgovcloudapi.net",
        "https://vision-kv.vault.microsoftazure.de",
    ],
)
def test_key_vault_names_and_sovereign_cloud_hosts_plan(vault: str) -> None:
    spec = validate_spec(
        {**BASE, "secrets": ["TOKEN"], "azure": {**WS, "key_vault": vault}}, Path("job.yaml"), Path("/srv")
    )
    refs = AzureMLBackend().plan(spec).request()["environment_variables"]["LAUNCHER_SECRET_REFS"]
    assert "vision-kv.vault." in refs


def test_the_launchers_own_tags_and_storage_account_variable_are_refused() -> None:
    spec = validate_spec({**BASE, "azure": {**WS, "tags": {"launcher-job": "other"}}}, Path("job.yaml"), Path("/srv"))
    with pytest.raises(SpecError, match="azure.tags: tag 'launcher-job'"):
        AzureMLBackend().plan(spec)
    spec = validate_spec({**BASE, "env": {"AZURE_STORAGE_ACCOUNT": "attacker"}}, Path("job.yaml"), Path("/srv"))
    with pytest.raises(SpecError, match="AZURE_STORAGE_ACCOUNT"):
        AzureMLBackend().plan(spec)
