"""The azure (Azure ML) backend: golden plans, the SDK's own REST form, and the
real azure-ai-ml / azure-keyvault-secrets clients against an in-memory Azure at
the HTTP level (tests/backends/fake_azureml.py).

Regenerate the golden files after an intended change with
`UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/backends/test_azure.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from launcher.backends import registry
from launcher.backends.azure import STATES, AzureMLBackend, AzureOptions, job_from_payload, log_files, secret_name
from launcher.errors import LauncherError, SpecError
from launcher.plan import JobRef, JobState
from launcher.runtime import entrypoint, rendezvous
from launcher.spec import JobSpec, validate_spec
from tests.backends.fake_azureml import FakeAzure, FakeCredential

# azure-ai-ml's marshmallow schemas warn about marshmallow 4 on every load; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
WS = {"subscription_id": "00000000-1111-2222-3333-444444444444", "resource_group": "ml-rg", "workspace": "vision-ws"}
BASE: dict[str, Any] = {
    "name": "digits",
    "image": "wsacr123.azurecr.io/launcher/train:1",
    "train": {"epochs": 3, "imgsz": 32, "batch": 64, "workers": 4},
    "env": {"LOG_LEVEL": "info"},
}
LOW_PRIORITY_CLUSTER = {
    "computeType": "AmlCompute",
    "properties": {
        "vmSize": "STANDARD_NC24S_V3",
        "vmPriority": "LowPriority",
        "scaleSettings": {"maxNodeCount": 4, "minNodeCount": 0},
    },
}

CASES: dict[str, dict[str, Any]] = {
    "azure_1x1_gpu": {
        **BASE,
        "train": {**BASE["train"], "data": "az://datasets/digits"},
        "resources": {"gpus": 1, "gpu_type": "A100-80GB"},
        "checkpoint": {"uri": "az://checkpoints/runs", "keep": 2},
        "secrets": ["WANDB_API_KEY"],
        "limits": {"max_runtime": "4h"},
        "azure": {
            **WS,
            "storage_account": "visiondata",
            "key_vault": "vision-kv",
            "identity": "managed",
            "tags": {"team": "vision"},
        },
    },
    "azure_2x4_low_priority": {
        **BASE,
        "train": {**BASE["train"], "data": "azureml://datastores/images/paths/imagenet-mini"},
        "resources": {"gpus": 4, "nodes": 2, "spot": True},
        "checkpoint": {"uri": "azureml://datastores/checkpoints/paths/runs"},
        "limits": {"max_runtime": "12h", "max_cost": 20},
        "azure": {**WS, "compute": "lowpri-v100", "instance_type": "Standard_NC24s_v3", "shm_size": "32g"},
    },
    "azure_cpu_only": {
        **BASE,
        "checkpoint": {"uri": "s3://shared-ckpt/runs"},
        "command": ["python", "my_train.py", "--steps", "10"],
        "limits": {"max_runtime": "30m"},
        "azure": {**WS, "experiment": "smoke"},
    },
}
EXPECTED_REST = {  # case -> (instance count, instance type, inputs, outputs, timeout, queue settings)
    "azure_1x1_gpu": (1, "Standard_NC24ads_A100_v4", {"data": "ReadOnlyMount"}, {}, "PT4H", {"jobTier": "Standard"}),
    "azure_2x4_low_priority": (2, None, {"data": "ReadOnlyMount"}, {"checkpoints": "ReadWriteMount"}, "PT4H5M5S", None),
    "azure_cpu_only": (1, "Standard_D4s_v3", {}, {}, "PT30M", {"jobTier": "Standard"}),
}


def _spec(raw: dict[str, Any]) -> JobSpec:
    return validate_spec(raw, Path("job.yaml"), Path("/srv"))


def _with(case: str, **changes: Any) -> JobSpec:
    raw = json.loads(json.dumps(CASES[case]))
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            raw.setdefault(section, {})[field] = value
        else:
            raw[section] = value
    return _spec(raw)


@pytest.fixture
def fake() -> FakeAzure:
    azure = FakeAzure()
    azure.computes["lowpri-v100"] = LOW_PRIORITY_CLUSTER
    return azure


def _backend(fake: FakeAzure, environ: dict[str, str] | None = None) -> AzureMLBackend:
    from azure.ai.ml import MLClient

    credential = FakeCredential()
    client = MLClient(credential, WS["subscription_id"], WS["resource_group"], WS["workspace"],
                      transport=fake.transport(), enable_telemetry=False)  # fmt: skip
    return AzureMLBackend(client, credential=credential, client_kwargs={"transport": fake.transport()},
                          environ=environ or {}, poll_s=0)  # fmt: skip


# ---------------------------------------------------------------- golden plans


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_matches_golden(case: str) -> None:
    plan = AzureMLBackend().plan(_spec(CASES[case]), job_id=f"{case.replace('_', '-')}-1")
    golden = GOLDEN / f"{case}.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(plan.to_yaml())
    assert plan.to_yaml() == golden.read_text()


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_becomes_command_job_with_expected_rest_form(case: str) -> None:
    from azure.ai.ml.entities import Command
    from azure.ai.ml.entities._job.to_rest_functions import to_rest_job_object

    plan = AzureMLBackend().plan(_spec(CASES[case]), job_id="job-1")
    job = job_from_payload(plan.request())
    assert isinstance(job, Command)
    rest = to_rest_job_object(job).as_dict()["properties"]
    count, instance_type, inputs, outputs, timeout, queue = EXPECTED_REST[case]
    assert rest["jobType"] == "Command"
    assert rest["distribution"] == {"distributionType": "PyTorch", "processCountPerInstance": 1}
    assert rest["resources"]["instanceCount"] == count
    assert rest["resources"].get("instanceType") == instance_type
    assert {k: v["mode"] for k, v in (rest.get("inputs") or {}).items()} == inputs
    assert {k: v["mode"] for k, v in (rest.get("outputs") or {}).items()} == outputs
    assert rest["limits"]["timeout"] == timeout
    assert rest.get("queueSettings") == queue
    assert rest["command"].startswith("python -m launcher.runtime.entrypoint --run-name digits ")


def test_plan_follows_the_container_contract() -> None:
    payload = AzureMLBackend().plan(_spec(CASES["azure_1x1_gpu"]), job_id="run-7").request()
    args = entrypoint.parse_args(payload["command"].split()[3:])
    assert args.run_name == "digits"  # the run folder is the spec name, not the job id
    assert args.checkpoint_uri == "az://checkpoints/runs"  # synced by the entrypoint, manifest layout
    assert (args.keep, args.gpus) == (2, 1)
    assert args.command[0] == "train" and "data=${{inputs.data}}" in args.command
    assert payload["inputs"]["data"]["path"] == "https://visiondata.blob.core.windows.net/datasets/digits"


def test_plan_shows_only_secret_references() -> None:
    plan = AzureMLBackend().plan(_spec(CASES["azure_1x1_gpu"]))
    refs = json.loads(plan.request()["environment_variables"]["LAUNCHER_SECRET_REFS"])
    assert refs == {"WANDB_API_KEY": "azure-kv:https://vision-kv.vault.azure.net/secrets/digits-WANDB-API-KEY"}
    assert plan.secrets == ("WANDB_API_KEY",)


def test_timeout_is_capped_by_max_cost_at_the_vm_price() -> None:
    backend = AzureMLBackend()
    plan = backend.plan(_spec(CASES["azure_2x4_low_priority"]))
    price = backend.catalog["instances"]["Standard_NC24s_v3"]["prices"]["eastus"]["spot"]
    assert plan.request()["limits"]["timeout"] == int(20 / (price * 2) * 3600)
    assert any("max_cost" in note for note in plan.notes)


def test_spot_on_serverless_asks_for_the_spot_tier() -> None:
    plan = AzureMLBackend().plan(_with("azure_cpu_only", resources={"spot": True}))
    assert plan.request()["queue_settings"] == {"job_tier": "spot"}


def test_plan_is_pure_and_imports_no_azure_library() -> None:
    code = (
        "import sys, json\n"
        "from launcher.backends.azure import AzureMLBackend\n"
        "from launcher.spec import JobSpec\n"
        f"spec = JobSpec.model_validate(json.loads({json.dumps(json.dumps(CASES['azure_1x1_gpu']))}))\n"
        "AzureMLBackend().plan(spec)\n"
        "print(sorted(m for m in sys.modules if m.startswith('azure')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_registered_under_its_name_and_alias() -> None:
    assert registry.get("azure") is AzureMLBackend
    assert registry.get("azureml") is AzureMLBackend


# ---------------------------------------------------------------- bad input


def test_missing_workspace_settings() -> None:
    spec = _with("azure_cpu_only", azure={"compute": "cpu"})
    with pytest.raises(LauncherError, match="azure.subscription_id, azure.resource_group, azure.workspace missing"):
        AzureMLBackend().plan(spec)


def test_unknown_instance_type_suggests_the_closest() -> None:
    spec = _with("azure_2x4_low_priority", azure__instance_type="Standard_NC24_v3")
    with pytest.raises(LauncherError, match="did you mean Standard_NC24s_v3"):
        AzureMLBackend().plan(spec)


def test_instance_type_with_other_gpu_count() -> None:
    spec = _with("azure_2x4_low_priority", azure__instance_type="Standard_NC6s_v3")
    with pytest.raises(LauncherError, match="has 1 GPU.*resources.gpus asks for 4"):
        AzureMLBackend().plan(spec)


def test_no_vm_size_fits_the_resources() -> None:
    spec = _with("azure_cpu_only", resources={"gpus": 3})
    with pytest.raises(LauncherError, match="No Azure ML VM size"):
        AzureMLBackend().plan(spec)


def test_non_azure_checkpoint_uri_says_how_it_is_synced() -> None:
    plan = AzureMLBackend().plan(_spec(CASES["azure_cpu_only"]))
    assert "outputs" not in plan.request()
    assert "--checkpoint-uri s3://shared-ckpt/runs" in plan.request()["command"]
    assert any("not Azure storage" in note and "unified sync" in note for note in plan.notes)


def test_local_checkpoint_path_is_refused() -> None:
    with pytest.raises(LauncherError, match="local path, which Azure ML nodes cannot reach"):
        AzureMLBackend().plan(_with("azure_cpu_only", checkpoint={"uri": "/tmp/ckpt"}))


def test_a_programs_local_data_folder_goes_to_its_remote_store_like_the_trainers() -> None:
    plan = AzureMLBackend().plan(_with("azure_cpu_only", train={"data": "images"}))
    target = "s3://shared-ckpt/runs/_data/{content-sha256}"
    assert f"--data '{target}'" in plan.request()["command"]
    assert any(f"train.data /srv/images is uploaded at submit to {target}" in note for note in plan.notes)


def test_az_uri_needs_a_storage_account() -> None:
    spec = _with("azure_1x1_gpu", azure={**WS, "key_vault": "vision-kv"})
    with pytest.raises(LauncherError, match="azure.storage_account"):
        AzureMLBackend().plan(spec)


def test_secrets_without_a_key_vault_plan_with_the_workspaces_vault() -> None:
    """A dry run needs no azure.key_vault: submit looks the workspace's Key Vault up."""
    spec = _with("azure_cpu_only", secrets=["HF_TOKEN"])
    refs = json.loads(AzureMLBackend().plan(spec).request()["environment_variables"]["LAUNCHER_SECRET_REFS"])
    assert refs == {"HF_TOKEN": "azure-kv:{workspace-key-vault}/secrets/digits-HF-TOKEN"}


def test_bad_options_name_the_key() -> None:
    with pytest.raises(SpecError, match=r"azure.identity: 'root' is not an identity"):
        AzureMLBackend().plan(_with("azure_cpu_only", azure={**WS, "identity": "root"}))
    with pytest.raises(SpecError, match=r"azure.comptue: unknown key 'comptue'; did you mean 'compute'"):
        AzureMLBackend().plan(_with("azure_cpu_only", azure={**WS, "comptue": "gpu"}))


# ---------------------------------------------------------------- submit, status, logs, cancel


def test_submit_sends_the_command_job_and_stores_secrets_in_key_vault(fake: FakeAzure) -> None:
    backend = _backend(fake, {"WANDB_API_KEY": "s3cret-value"})
    plan = backend.plan(_spec(CASES["azure_1x1_gpu"]), job_id="digits-1")
    ref = backend.submit(plan)
    assert (ref.id, ref.native_id, ref.extra["workspace"]) == ("digits-1", "digits-1", "vision-ws")
    assert fake.secrets == {secret_name("digits", "WANDB_API_KEY"): "s3cret-value"}
    (put,) = fake.requests_to(r"/workspaces/vision-ws/jobs/digits-1$", "PUT")
    body = put.body["properties"]
    assert body["distribution"] == {"distributionType": "PyTorch", "processCountPerInstance": 1}
    assert body["resources"]["instanceType"] == "Standard_NC24ads_A100_v4"
    assert not body.get("outputs")  # az:// checkpoints are synced by the entrypoint, not mounted
    assert body["environmentId"].endswith(fake.requests_to(r"/environments/", "PUT")[0].path)
    assert "s3cret-value" not in json.dumps(put.body)
    assert put.headers["Authorization"] == "Bearer fake-aad-token"


def test_submit_checks_the_cluster_then_sends_compute_id(fake: FakeAzure) -> None:
    backend = _backend(fake)
    backend.submit(backend.plan(_spec(CASES["azure_2x4_low_priority"]), job_id="lp-1"))
    (put,) = fake.requests_to(r"/jobs/lp-1$", "PUT")
    assert put.body["properties"]["computeId"].endswith("/workspaces/vision-ws/computes/lowpri-v100")
    assert put.body["properties"]["resources"]["instanceCount"] == 2


def test_submit_compute_target_not_found(fake: FakeAzure) -> None:
    backend = _backend(fake)
    spec = _with("azure_2x4_low_priority", azure__compute="no-such-cluster")
    with pytest.raises(LauncherError, match="Compute target 'no-such-cluster' was not found in workspace vision-ws"):
        backend.submit(backend.plan(spec))
    assert not fake.requests_to(r"/jobs/", "PUT")


def test_submit_refuses_spot_on_a_dedicated_cluster(fake: FakeAzure) -> None:
    fake.computes["lowpri-v100"] = {
        **LOW_PRIORITY_CLUSTER,
        "properties": {**LOW_PRIORITY_CLUSTER["properties"], "vmPriority": "Dedicated"},
    }
    backend = _backend(fake)
    with pytest.raises(LauncherError, match="cluster 'lowpri-v100' is dedicated"):
        backend.submit(backend.plan(_spec(CASES["azure_2x4_low_priority"])))


def test_submit_refuses_a_cluster_of_another_vm_size(fake: FakeAzure) -> None:
    backend = _backend(fake)
    spec = _with("azure_2x4_low_priority", azure__instance_type="Standard_NC64as_T4_v3")
    with pytest.raises(
        LauncherError, match="runs STANDARD_NC24S_V3, but azure.instance_type says Standard_NC64as_T4_v3"
    ):
        backend.submit(backend.plan(spec))


def test_submit_refuses_more_nodes_than_the_cluster_has(fake: FakeAzure) -> None:
    backend = _backend(fake)
    spec = _with("azure_2x4_low_priority", resources={"gpus": 4, "nodes": 8, "spot": True})
    with pytest.raises(LauncherError, match="scales to 4 node"):
        backend.submit(backend.plan(spec))


def test_service_rejection_is_one_sentence(fake: FakeAzure) -> None:
    backend = _backend(fake)
    spec = _with("azure_cpu_only", azure={**WS, "experiment": "smoke"})
    plan = backend.plan(spec, job_id="rejected-1")
    fake.reject_jobs = "Quota exceeded for Standard_D4s_v3 in eastus"
    with pytest.raises(
        LauncherError, match=r"Azure ML rejected submitting job rejected-1: \(UserError\) Quota exceeded"
    ):
        backend.submit(plan)


def test_submit_needs_the_secret_values(fake: FakeAzure) -> None:
    backend = _backend(fake, {})
    with pytest.raises(
        LauncherError, match="secret WANDB_API_KEY is listed in the spec but not set in your environment"
    ):
        backend.submit(backend.plan(_spec(CASES["azure_1x1_gpu"])))


def test_status_maps_states_and_reports_the_error(fake: FakeAzure) -> None:
    backend = _backend(fake)
    ref = backend.submit(backend.plan(_spec(CASES["azure_cpu_only"]), job_id="cpu-1"))
    fake.statuses["cpu-1"] = ["Queued", "Running", "Failed"]
    fake.errors["cpu-1"] = "Execution failed: exit code 3"
    seen = [backend.status(ref) for _ in range(3)]
    assert [s.state for s in seen] == [JobState.PENDING, JobState.RUNNING, JobState.FAILED]
    assert seen[2].message == "Execution failed: exit code 3"
    assert seen[2].native_state == "Failed"


def test_every_azure_status_is_mapped() -> None:
    from azure.ai.ml._restclient.arm_ml_service.models._enums import JobStatus as AzureStatus

    assert {s.value for s in AzureStatus} <= set(STATES)
    assert STATES["Completed"] is JobState.SUCCEEDED and STATES["Canceled"] is JobState.STOPPED


def test_logs_follow_reads_each_nodes_user_log(fake: FakeAzure) -> None:
    backend = _backend(fake)
    ref = backend.submit(backend.plan(_spec(CASES["azure_cpu_only"]), job_id="cpu-2"))
    fake.statuses["cpu-2"] = ["Running", "Completed"]
    fake.logs["cpu-2"] = {"user_logs/std_log_process_0.txt": "epoch 1\nepoch 2\n", "user_logs/std_log_process_1.txt": "node 1\n",
                          "system_logs/lifecycler/execution-wrapper.log": "not user output"}  # fmt: skip
    lines = list(backend.logs(ref, follow=True))
    assert lines == ["[std_log_process_0] epoch 1", "[std_log_process_0] epoch 2", "[std_log_process_1] node 1"]
    assert len(fake.requests_to(r"/runs/cpu-2/details$")) == 2


def test_log_file_selection_falls_back_to_driver_logs() -> None:
    assert log_files({"azureml-logs/70_driver_log_1.txt": "u", "azureml-logs/70_driver_log_0.txt": "u", "x.txt": "u"}) == [
        "azureml-logs/70_driver_log_0.txt", "azureml-logs/70_driver_log_1.txt"]  # fmt: skip


def test_cancel_posts_to_the_job(fake: FakeAzure) -> None:
    backend = _backend(fake)
    ref = backend.submit(backend.plan(_spec(CASES["azure_cpu_only"]), job_id="cpu-3"))
    backend.cancel(ref)
    assert len(fake.requests_to(r"/jobs/cpu-3/cancel$", "POST")) == 1
    assert backend.status(ref).state is JobState.STOPPING


def test_status_of_unknown_job_is_one_clear_error(fake: FakeAzure) -> None:
    ref = JobRef("gone", "azure", "gone", {**WS})
    with pytest.raises(LauncherError, match="while reading job gone"):
        _backend(fake).status(ref)


def test_the_pushed_image_replaces_the_default_local_image() -> None:
    pushed = "wsacr123.azurecr.io/torch-launcher-train@sha256:abc"
    spec = _with("azure_cpu_only", image="torch-launcher-train:latest")
    assert AzureMLBackend(pushed_image=pushed).plan(spec).payload["environment"]["image"] == pushed
    assert AzureMLBackend(pushed_image="").plan(spec).payload["environment"]["image"] == "torch-launcher-train:latest"


# ---------------------------------------------------------------- offers, image push, check


def test_offers_list_fitting_sizes_cheapest_first() -> None:
    offers = AzureMLBackend().offers(_spec({**BASE, "resources": {"gpus": 1, "spot": True}, "azure": WS}))
    assert offers and all(o.gpus == 1 and o.spot and o.region == "eastus" for o in offers)
    assert offers[0].instance == "Standard_NC4as_T4_v3"
    assert [o.price_per_hour for o in offers] == sorted(o.price_per_hour for o in offers)
    assert {"T4", "A10", "V100", "A100-80GB", "H100"} <= {o.gpu_type for o in offers}


class FakeDocker:
    """The docker SDK's surface that push_image uses: images.get(...).tag, images.push(stream=True, decode=True)."""

    def __init__(self) -> None:
        self.tagged: list[tuple[str, str]] = []
        self.pushed: list[dict[str, Any]] = []
        self.images = self

    def get(self, name: str) -> "FakeDocker":
        return self

    def tag(self, repo: str, tag: str) -> bool:
        self.tagged.append((repo, tag))
        return True

    def push(self, repo: str, tag: str, auth_config: dict[str, str], stream: bool, decode: bool):  # type: ignore[no-untyped-def]
        self.pushed.append({"repo": repo, "tag": tag, "auth": auth_config})
        return iter([{"status": "Pushing"}, {"aux": {"Tag": tag, "Digest": "sha256:abc", "Size": 1}}])


def test_push_image_to_the_workspace_registry(fake: FakeAzure) -> None:
    docker = FakeDocker()
    pushed = _backend(fake).push_image("torch-launcher-train:latest", docker)
    assert pushed == "wsacr123.azurecr.io/torch-launcher-train@sha256:abc"
    assert docker.tagged == [("wsacr123.azurecr.io/torch-launcher-train", "latest")]
    assert docker.pushed[0]["auth"]["password"] == "acr-refresh-token"
    (exchange,) = fake.requests_to(r"^/oauth2/exchange$", "POST")
    assert "grant_type=access_token" in exchange.body and "service=wsacr123.azurecr.io" in exchange.body


def test_check_probes_the_workspace(fake: FakeAzure) -> None:
    check = _backend(fake).check()
    assert (check.sdk, check.credentials) == (True, True)
    assert fake.requests_to(r"/workspaces/vision-ws$", "GET")


def test_check_without_workspace_names_the_variables() -> None:
    check = AzureMLBackend(environ={}).check()
    assert check.credentials is False and "AZUREML_WORKSPACE_NAME" in check.message


# ---------------------------------------------------------------- in the container


def _node_env(rank: int, nodes: int = 2) -> dict[str, str]:
    """What Azure ML sets for a PyTorch job with process_count_per_instance=1 (one process per node)."""
    return {
        "AZUREML_RUN_ID": "digits-1", "AZUREML_ARM_WORKSPACE_NAME": "vision-ws",
        "MASTER_ADDR": "10.0.0.4", "MASTER_PORT": "6105", "WORLD_SIZE": str(nodes),
        "NODE_RANK": str(rank), "RANK": str(rank), "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
    }  # fmt: skip


@pytest.mark.parametrize("rank", [0, 1])
def test_rendezvous_from_azure_environment_for_each_node(rank: int, tmp_path: Path) -> None:
    rdzv = rendezvous.detect(_node_env(rank), resource_config=tmp_path / "absent.json")
    assert rdzv == rendezvous.Rendezvous("azureml", 2, rank, "10.0.0.4", 6105)
    args = entrypoint.parse_args(["--run-name", "digits-1", "--gpus", "4", "--", "train", "epochs=1"])
    cmd = entrypoint.build_command(args, rdzv, entrypoint.processes_per_node(args), tmp_path)
    torchrun = cmd[cmd.index("launcher.runtime.torchrun") + 1 : cmd.index("-m", 3)]
    assert torchrun == ["--nnodes", "2", "--node_rank", str(rank), "--master_addr", "10.0.0.4",
                        "--master_port", "6105", "--nproc_per_node", "4"]  # fmt: skip


def test_rendezvous_single_azure_node_is_standalone(tmp_path: Path) -> None:
    env = {"AZUREML_RUN_ID": "digits-1", "WORLD_SIZE": "1", "NODE_RANK": "0", "RANK": "0"}
    rdzv = rendezvous.detect(env, resource_config=tmp_path / "absent.json")
    assert (rdzv.platform, rdzv.nnodes, rdzv.node_rank) == ("azureml", 1, 0)
    assert rdzv.torchrun_args(1)[:1] == ["--standalone"]


def test_options_model_fields() -> None:
    assert {"subscription_id", "resource_group", "workspace", "compute", "instance_type", "identity", "key_vault",
            "tags", "shm_size"} <= set(AzureOptions.model_fields)  # fmt: skip


def test_example_spec_plans(fake: FakeAzure) -> None:
    from launcher.spec import load_spec

    environ = {
        "AZURE_SUBSCRIPTION_ID": WS["subscription_id"],
        "AZURE_RESOURCE_GROUP": "ml-rg",
        "AZUREML_WORKSPACE_NAME": "vision-ws",
    }
    spec = load_spec(REPO / "examples" / "azure.yaml", environ=environ)
    fake.computes["gpu-lowpri"] = LOW_PRIORITY_CLUSTER
    backend = _backend(fake, {"WANDB_API_KEY": "k"})
    ref = backend.submit(backend.plan(spec, job_id="digits-azure-1"))
    assert ref.native_id == "digits-azure-1"
    (put,) = fake.requests_to(r"/jobs/digits-azure-1$", "PUT")
    assert put.body["properties"]["resources"]["instanceCount"] == 2
