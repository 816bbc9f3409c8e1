"""The gcp (Vertex AI) backend: golden plans, the SDK's own types, and the real
client libraries against a local HTTP fake of the Google REST endpoints.

Regenerate the golden files after an intended change with
`UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/backends/test_gcp.py`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from launcher.backend import Offer
from launcher.backends.gcp import JOB_STATES, GcpOptions, VertexBackend, secret_id
from launcher.catalog import load_catalog
from launcher.errors import LauncherError, SpecError
from launcher.plan import Ending, JobRef, JobState
from launcher.runtime import rendezvous
from launcher.spec import JobSpec, validate_spec
from tests.backends.fake_vertex import FakeGoogle

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
GCP = {"project": "demo-project", "region": "us-central1"}
BASE: dict[str, Any] = {
    "name": "digits",
    "image": "us-central1-docker.pkg.dev/demo-project/launcher/train:1",
    "train": {"epochs": 3, "imgsz": 32, "batch": 64, "workers": 4},
    "checkpoint": {"uri": "gs://demo-ckpt/runs", "keep": 2},
    "env": {"LOG_LEVEL": "info"},
}

CASES: dict[str, dict[str, Any]] = {
    "gcp_1x1_gpu": {**BASE, "resources": {"gpus": 1, "gpu_type": "T4"}, "gcp": {**GCP, "labels": {"team": "vision"}}},
    "gcp_3x4_spot": {
        **BASE,
        "secrets": ["WANDB_API_KEY"],
        "resources": {"gpus": 4, "nodes": 3, "gpu_type": "A100", "spot": True},
        "limits": {"max_runtime": "6h", "max_cost": 100},
        "gcp": {
            **GCP,
            "service_account": "trainer@demo-project.iam.gserviceaccount.com",
            "network": "projects/123456/global/networks/vpc",
            "boot_disk_size_gb": 200,
        },
    },  # fmt: skip
    "gcp_cpu": {
        **BASE,
        "checkpoint": {},
        "command": ["python", "my_train.py", "--steps", "10"],
        "limits": {"max_runtime": "30m"},
        "gcp": {**GCP, "staging_bucket": "demo-staging", "machine_type": "n1-standard-8"},
    },
}


def _spec(raw: dict[str, Any]) -> JobSpec:
    return validate_spec(raw, Path("job.yaml"), Path("/srv"))


def _with(case: str, **changes: Any) -> JobSpec:
    raw = json.loads(json.dumps(CASES[case]))
    for dotted, value in changes.items():
        node = raw
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return JobSpec.model_validate(raw)


# ---------------------------------------------------------------- plans


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_matches_golden_file(case: str) -> None:
    text = VertexBackend().plan(_spec(CASES[case])).to_yaml()
    golden = GOLDEN / f"{case}.yaml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert text == golden.read_text()


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_is_the_custom_job_rest_body(case: str) -> None:
    """The body parses into aiplatform_v1.CustomJob and prints back unchanged (camelCase, int64 strings, "3600s")."""
    from google.cloud.aiplatform_v1.types import CustomJob
    from google.protobuf import json_format

    body = VertexBackend().plan(_spec(CASES[case])).request()
    job = CustomJob.from_json(json.dumps(body))  # unknown or misspelled fields raise here
    assert json_format.MessageToDict(CustomJob.pb(job)) == body
    parsed = json_format.ParseDict(body, CustomJob.pb(CustomJob()))
    assert parsed.job_spec.worker_pool_specs[0].replica_count == 1


def test_plans_import_no_google_library() -> None:
    code = (
        "import json, sys; from launcher.backends.gcp import VertexBackend; from launcher.spec import JobSpec; "
        f"VertexBackend().plan(JobSpec.model_validate(json.loads({json.dumps(json.dumps(CASES['gcp_3x4_spot']))}))); "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('google.', 'grpc', 'proto')))))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert [m for m in json.loads(out) if m != "google.cloud"] == []


def test_plan_is_pure_and_named_after_the_job_id() -> None:
    spec = _spec(CASES["gcp_3x4_spot"])
    before = spec.model_dump()
    backend = VertexBackend()
    assert backend.plan(spec).payload == backend.plan(spec).payload
    plan = backend.plan(spec, "digits-20260101-000000-abcd")
    assert plan.job_name == plan.payload["displayName"] == "digits-20260101-000000-abcd"
    assert plan.payload["labels"]["launcher-job"] == "digits-20260101-000000-abcd"
    assert spec.model_dump() == before


def test_three_nodes_are_one_chief_and_two_workers_on_the_same_machine() -> None:
    pools = VertexBackend().plan(_spec(CASES["gcp_3x4_spot"])).request()["jobSpec"]["workerPoolSpecs"]
    assert [p["replicaCount"] for p in pools] == ["1", "2"]
    assert pools[0]["machineSpec"] == pools[1]["machineSpec"] == {
        "machineType": "a2-highgpu-4g", "acceleratorType": "NVIDIA_TESLA_A100", "acceleratorCount": 4,
    }  # fmt: skip
    assert pools[0]["containerSpec"] == pools[1]["containerSpec"]


def test_container_follows_the_entrypoint_contract() -> None:
    spec = _spec(CASES["gcp_1x1_gpu"])
    container = VertexBackend().plan(spec).request()["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]
    assert container["command"] == ["python", "-m", "launcher.runtime.entrypoint"]
    from launcher.contract import EntrypointArgs

    assert EntrypointArgs.parse(container["args"]) == EntrypointArgs(
        run_name="digits", checkpoint_uri="gs://demo-ckpt/runs", keep=2, every=1, gpus=1,
        spec_hash=spec.spec_hash(), command=("train", *spec.train.to_args()),
    )  # fmt: skip


def test_gs_checkpoint_becomes_the_base_output_directory_of_the_run() -> None:
    body = VertexBackend().plan(_spec(CASES["gcp_1x1_gpu"])).request()
    assert body["jobSpec"]["baseOutputDirectory"] == {"outputUriPrefix": "gs://demo-ckpt/runs/digits"}
    staged = VertexBackend().plan(_spec(CASES["gcp_cpu"])).request()
    assert staged["jobSpec"]["baseOutputDirectory"] == {"outputUriPrefix": "gs://demo-staging/digits"}


def test_max_cost_caps_the_timeout_at_the_spot_price_of_all_nodes() -> None:
    spec = _spec(CASES["gcp_3x4_spot"])
    price = load_catalog("gcp")["instances"]["a2-highgpu-4g"]["prices"]["us-central1"]["spot"]
    plan = VertexBackend().plan(spec)
    assert plan.request()["jobSpec"]["scheduling"] == {
        "restartJobOnWorkerRestart": True, "timeout": f"{int(100 / (price * 3) * 3600)}s", "strategy": "SPOT",
    }  # fmt: skip
    assert int(100 / (price * 3) * 3600) < 6 * 3600
    uncapped = VertexBackend().plan(_with("gcp_3x4_spot", limits={"max_runtime": "1h", "max_cost": 100}))
    assert uncapped.request()["jobSpec"]["scheduling"]["timeout"] == "3600s"


def test_secrets_appear_only_as_secret_manager_references(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "s3cr3t-value")
    plan = VertexBackend().plan(_spec(CASES["gcp_3x4_spot"]))
    assert "s3cr3t-value" not in plan.to_json()
    env = plan.request()["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["env"]
    refs = json.loads(next(e["value"] for e in env if e["name"] == "LAUNCHER_SECRET_REFS"))
    assert refs == {
        "WANDB_API_KEY": "gcp-sm:projects/demo-project/secrets/launcher-digits-WANDB_API_KEY/versions/latest"
    }


def test_cheapest_machine_that_fits_is_chosen() -> None:
    backend = VertexBackend()
    assert (
        backend.machine(_with("gcp_1x1_gpu", resources={"gpus": 1, "gpu_type": "L4"}), GcpOptions(**GCP)).name
        == "g2-standard-4"
    )
    big = _with("gcp_1x1_gpu", resources={"gpus": 8, "gpu_type": "H100"})
    assert backend.machine(big, GcpOptions(**GCP)).name == "a3-highgpu-8g"
    cpu = _with("gcp_1x1_gpu", resources={"gpus": 0, "cpus": 16})
    assert backend.machine(cpu, GcpOptions(**GCP)).name == "n1-standard-16"


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"gcp__machine_type": "n9-giant-1"}, "Unknown Vertex AI machine type 'n9-giant-1'"),
        ({"resources": {"gpus": 1, "gpu_type": "K9000"}}, "Vertex AI has no K9000 GPUs"),
        ({"gcp__accelerator_type": "NVIDIA_TESLA_K9000"}, "no accelerator 'NVIDIA_TESLA_K9000'"),
        ({"resources": {"gpus": 3, "gpu_type": "T4"}}, "exactly 3 T4 GPUs per node; they come with 1, 2, 4"),
        (
            {"resources": {"gpus": 8, "gpu_type": "T4"}, "gcp__machine_type": "n1-standard-16"},
            "n1-standard-16 does not allow 8 x NVIDIA_TESLA_T4",
        ),
        (
            {"resources": {"gpus": 1, "gpu_type": "T4"}, "gcp__machine_type": "a2-highgpu-1g"},
            "a2-highgpu-1g cannot take NVIDIA_TESLA_T4",
        ),
        ({"gcp": {"region": "us-central1"}}, "needs gcp.project"),
        ({"gcp": {"project": "demo-project"}}, "needs gcp.region"),
        ({"checkpoint": {"uri": "/srv/checkpoints"}}, "Use a gs://bucket/prefix URI"),
        (
            {"train__data": "/srv/data/digits", "checkpoint__uri": None},
            "/srv/data/digits is a folder on this machine, and the job has no remote store",
        ),
        ({"limits": {"max_cost": 0.001}}, "buys only 5 s"),
    ],
)
def test_bad_input_is_one_sentence_and_a_fix(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(LauncherError) as info:
        VertexBackend().plan(_with("gcp_1x1_gpu", **changes))
    assert message in str(info.value)
    assert info.value.fix


def test_other_checkpoint_stores_are_synced_by_the_container() -> None:
    plan = VertexBackend().plan(_with("gcp_1x1_gpu", checkpoint={"uri": "s3://bucket/ckpt"}))
    assert "baseOutputDirectory" not in plan.payload["jobSpec"]
    assert any("s3://bucket/ckpt is synced from inside the container" in note for note in plan.notes)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"network": "vpc"}, "projects/PROJECT_NUMBER/global/networks/NAME"),
        ({"labels": {"Team": "x"}}, "label Team=x is not valid"),
        ({"service_account": "trainer"}, "not a service account email"),
        ({"machine_typ": "n1-standard-4"}, "did you mean 'machine_type'"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as info:
        VertexBackend().plan(_with("gcp_1x1_gpu", gcp={**GCP, **options}))
    assert message in str(info.value) and str(info.value).startswith("gcp.")


# ---------------------------------------------------------------- catalog and offers


def test_catalog_machines_allow_what_their_instances_list() -> None:
    catalog = load_catalog("gcp")
    assert catalog["date"] and catalog["sources"]
    for name, inst in catalog["instances"].items():
        machine = catalog["machine_types"][inst["machine_type"]]
        if inst["gpus"]:
            assert inst["gpus"] in machine["accelerators"][inst["accelerator_type"]], name
            assert catalog["accelerators"][inst["accelerator_type"]]["gpu_type"] == inst["gpu_type"]
        for region in catalog["regions"]:
            prices = inst["prices"][region]
            assert 0 < prices["spot"] < prices["on_demand"], name
    assert {a["gpu_type"] for a in catalog["accelerators"].values()} >= {
        "T4",
        "V100",
        "L4",
        "A100",
        "A100-80GB",
        "H100",
    }


def test_offers_are_the_fitting_machines_sorted_by_price() -> None:
    spec = _with("gcp_1x1_gpu", resources={"gpus": 1, "gpu_type": "T4", "spot": True}, gcp={"project": "demo-project"})
    offers = VertexBackend().offers(spec)
    assert offers and all(isinstance(o, Offer) and o.gpus == 1 and o.gpu_type == "T4" and o.spot for o in offers)
    assert {o.region for o in offers} == {"us-central1", "europe-west4"}
    assert [o.price_per_hour for o in offers] == sorted(o.price_per_hour for o in offers)
    cheapest = offers[0]
    assert (
        cheapest.instance == "n1-standard-4+1xNVIDIA_TESLA_T4" and cheapest.details["machine_type"] == "n1-standard-4"
    )


# ---------------------------------------------------------------- real clients against the fake


@pytest.fixture()
def fake() -> Iterator[FakeGoogle]:
    server = FakeGoogle().start()
    yield server
    server.stop()


def _clients(fake: FakeGoogle) -> dict[str, Any]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform_v1, logging, secretmanager

    creds = AnonymousCredentials()
    options = {"api_endpoint": fake.endpoint}
    return {
        "job_client": aiplatform_v1.JobServiceClient(transport="rest", client_options=options, credentials=creds),
        "secrets_client": secretmanager.SecretManagerServiceClient(
            transport="rest", client_options=options, credentials=creds
        ),
        "logging_client": logging.Client(
            project="demo-project", credentials=creds, _use_grpc=False, client_options=options
        ),
    }


def test_submit_sends_the_plan_and_status_maps_the_job_state(fake: FakeGoogle) -> None:
    from google.cloud.aiplatform_v1.types import CustomJob
    from google.protobuf import json_format

    backend = VertexBackend(**_clients(fake))
    plan = backend.plan(_spec(CASES["gcp_1x1_gpu"]), "digits-1")
    ref = backend.submit(plan)
    create = fake.requests[-1]
    assert (create.method, create.path) == ("POST", "/v1/projects/demo-project/locations/us-central1/customJobs")
    # the library sends enums as numbers (enum-encoding=int): compare with the plan encoded the same way
    sent = CustomJob.pb(CustomJob.from_json(json.dumps(plan.request())))
    assert create.body == json_format.MessageToDict(sent, use_integers_for_enums=True)
    assert create.body["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]["acceleratorType"] == 5  # NVIDIA_TESLA_T4
    assert create.body["jobSpec"]["workerPoolSpecs"][0]["replicaCount"] == "1"
    assert ref == JobRef("digits-1", "gcp", "projects/demo-project/locations/us-central1/customJobs/1000",
                         {"project": "demo-project", "region": "us-central1"})  # fmt: skip
    assert backend.status(ref).state is JobState.PENDING
    fake.set_state(ref.native_id, "JOB_STATE_RUNNING")
    assert backend.status(ref).state is JobState.RUNNING
    fake.set_state(ref.native_id, "JOB_STATE_SUCCEEDED")
    assert backend.status(ref).ok


def test_failed_job_reports_the_error_and_exit_code(fake: FakeGoogle) -> None:
    backend = VertexBackend(**_clients(fake))
    ref = backend.submit(backend.plan(_spec(CASES["gcp_cpu"])))
    fake.set_state(ref.native_id, "JOB_STATE_FAILED", "The replica workerpool0-0 exited with a non-zero status of 3.")
    status = backend.status(ref)
    assert (status.state, status.exit_code, status.native_state) == (JobState.FAILED, 3, "JOB_STATE_FAILED")
    assert "workerpool0-0 exited" in status.message and status.result_code() == 3


def test_cancel_calls_cancel_custom_job(fake: FakeGoogle) -> None:
    backend = VertexBackend(**_clients(fake))
    ref = backend.submit(backend.plan(_spec(CASES["gcp_cpu"])))
    backend.cancel(ref)
    assert (fake.requests[-1].method, fake.requests[-1].path) == ("POST", f"/v1/{ref.native_id}:cancel")
    assert backend.status(ref).state is JobState.STOPPING
    fake.set_state(ref.native_id, "JOB_STATE_CANCELLED")
    status = backend.status(ref)
    assert status.state is JobState.STOPPED and not status.ok


def test_submit_stores_secrets_in_secret_manager_and_sends_only_references(fake: FakeGoogle) -> None:
    backend = VertexBackend(**_clients(fake), environ={"WANDB_API_KEY": "s3cr3t-value"})
    plan = backend.plan(_spec(CASES["gcp_3x4_spot"]))
    backend.submit(plan)
    backend.submit(plan)  # the secret exists: a second submission adds a version
    name = f"projects/demo-project/secrets/{secret_id('digits', 'WANDB_API_KEY')}"
    assert fake.secrets == {name: [b"s3cr3t-value", b"s3cr3t-value"]}
    create = next(r for r in fake.requests if r.path.endswith("/customJobs"))
    assert "s3cr3t-value" not in json.dumps(create.body)


def test_submit_refuses_a_secret_missing_from_the_environment(fake: FakeGoogle) -> None:
    backend = VertexBackend(**_clients(fake), environ={})
    with pytest.raises(
        LauncherError, match="secret WANDB_API_KEY is listed in the spec but not set in your environment"
    ):
        backend.submit(backend.plan(_spec(CASES["gcp_3x4_spot"])))
    assert fake.jobs == {}


def test_submit_refuses_an_image_that_exists_only_here(fake: FakeGoogle) -> None:
    backend = VertexBackend(**_clients(fake))
    plan = backend.plan(_with("gcp_cpu", image="torch-launcher-train:latest"))
    assert any("push it first" in note for note in plan.notes)
    with pytest.raises(LauncherError, match="Vertex AI cannot pull it"):
        backend.submit(plan)
    assert fake.jobs == {}


def test_the_pushed_image_replaces_the_default_local_image() -> None:
    pushed = "us-central1-docker.pkg.dev/demo-project/launcher/torch-launcher-train@sha256:abc"
    plan = VertexBackend(pushed_image=pushed).plan(_with("gcp_cpu", image="torch-launcher-train:latest"))
    assert plan.payload["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["imageUri"] == pushed
    assert not any("push it first" in note for note in plan.notes)


def _entry(job_id: str, second: int, text: str) -> dict[str, Any]:
    return {
        "logName": "projects/demo-project/logs/workerpool0-0",
        "resource": {
            "type": "ml_job",
            "labels": {"job_id": job_id, "project_id": "demo-project", "task_name": "workerpool0-0"},
        },
        "timestamp": f"2026-01-01T00:00:0{second}Z",
        "textPayload": text,
    }


def test_logs_read_the_jobs_cloud_logging_entries(fake: FakeGoogle) -> None:
    backend = VertexBackend(**_clients(fake), poll_s=0)
    ref = backend.submit(backend.plan(_spec(CASES["gcp_cpu"])))
    structured = {**_entry("1000", 4, ""), "jsonPayload": {"message": "epoch 3", "levelname": "INFO"}}
    del structured["textPayload"]
    fake.log_entries += [
        _entry("1000", 1, "epoch 1"),
        _entry("999", 2, "other job"),
        _entry("1000", 3, "epoch 2"),
        structured,
    ]
    assert list(backend.logs(ref)) == ["epoch 1", "epoch 2", "epoch 3"]
    listing = fake.requests[-1]
    assert listing.path == "/v2/entries:list"
    assert 'resource.type="ml_job" AND resource.labels.job_id="1000"' in listing.body["filter"]
    fake.set_state(ref.native_id, "JOB_STATE_SUCCEEDED")
    assert list(backend.logs(ref, follow=True)) == ["epoch 1", "epoch 2", "epoch 3"]


def test_following_logs_reads_new_lines_until_the_job_finishes(fake: FakeGoogle) -> None:
    backend = VertexBackend(**_clients(fake), poll_s=0)
    ref = backend.submit(backend.plan(_spec(CASES["gcp_cpu"])))
    fake.set_state(ref.native_id, "JOB_STATE_RUNNING")
    fake.log_entries.append(_entry("1000", 1, "epoch 1"))
    lines = backend.logs(ref, follow=True)
    assert next(lines) == "epoch 1"
    fake.log_entries.append(_entry("1000", 2, "epoch 2"))
    fake.set_state(ref.native_id, "JOB_STATE_SUCCEEDED")
    assert list(lines) == ["epoch 2"]
    listing = [r for r in fake.requests if r.path == "/v2/entries:list"][-1]
    assert 'timestamp>"2026-01-01T00:00:01' in listing.body["filter"]


def test_logs_without_logging_access_say_what_to_grant(fake: FakeGoogle) -> None:
    backend = VertexBackend(**_clients(fake))
    ref = backend.submit(backend.plan(_spec(CASES["gcp_cpu"])))
    fake.logging_status = 403
    with pytest.raises(LauncherError, match="roles/logging.viewer"):
        list(backend.logs(ref))


def test_every_vertex_job_state_is_mapped() -> None:
    from google.cloud.aiplatform_v1.types import JobState as VertexState

    assert set(JOB_STATES) == {state.name for state in VertexState}


# ---------------------------------------------------------------- rendezvous in the container


def _cluster_spec(pool: str, index: int) -> str:
    cluster = {
        "workerpool0": ["cmle-training-workerpool0-1000-0:2222"],
        "workerpool1": ["cmle-training-workerpool1-1000-0:2222", "cmle-training-workerpool1-1000-1:2222"],
    }
    return json.dumps(
        {"cluster": cluster, "environment": "cloud", "task": {"type": pool, "index": index, "trial": ""}, "job": "{}"}
    )


@pytest.mark.parametrize(
    ("pool", "index", "rank"), [("workerpool0", 0, 0), ("workerpool1", 0, 1), ("workerpool1", 1, 2)]
)
def test_each_replica_of_a_three_node_job_finds_its_rank(tmp_path: Path, pool: str, index: int, rank: int) -> None:
    environ = {
        "CLUSTER_SPEC": _cluster_spec(pool, index),
        "MASTER_ADDR": "cmle-training-workerpool0-1000-0",
        "MASTER_PORT": "3333",
    }
    rdzv = rendezvous.detect(environ, resource_config=tmp_path / "absent.json")
    assert (rdzv.platform, rdzv.nnodes, rdzv.node_rank, rdzv.is_chief) == ("vertex", 3, rank, rank == 0)
    assert rdzv.torchrun_args(4) == [
        "--nnodes", "3", "--node_rank", str(rank), "--master_addr", "cmle-training-workerpool0-1000-0",
        "--master_port", "3333", "--nproc_per_node", "4",
    ]  # fmt: skip


def test_without_master_variables_the_chief_of_cluster_spec_is_the_master(tmp_path: Path) -> None:
    rdzv = rendezvous.detect(
        {"CLUSTER_SPEC": _cluster_spec("workerpool1", 1)}, resource_config=tmp_path / "absent.json"
    )
    assert (rdzv.master_addr, rdzv.master_port, rdzv.node_rank) == ("cmle-training-workerpool0-1000-0", 2222, 2)


# ---------------------------------------------------------------- image push and check


class _Credentials:
    token = ""

    def refresh(self, request: object) -> None:
        self.token = "ya29.token"


class _Image:
    def __init__(self, log: list[tuple[Any, ...]]) -> None:
        self.log = log

    def tag(self, repository: str, tag: str) -> None:
        self.log.append(("tag", repository, tag))


class _Images:
    def __init__(self, log: list[tuple[Any, ...]], events: list[dict[str, Any]]) -> None:
        self.log, self.events = log, events

    def get(self, name: str) -> _Image:
        self.log.append(("get", name))
        return _Image(self.log)

    def push(
        self, repository: str, tag: str, auth_config: dict[str, str], stream: bool, decode: bool
    ) -> Iterator[dict[str, Any]]:
        self.log.append(("push", repository, tag, auth_config["username"]))
        return iter(self.events)


class _Docker:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.images = _Images(self.log, events)

    def login(self, registry: str, username: str, password: str) -> None:
        self.log.append(("login", registry, username, password))


def test_push_image_goes_to_artifact_registry_with_an_access_token() -> None:
    docker = _Docker([{"status": "Pushed"}, {"aux": {"Tag": "1", "Digest": "sha256:abc", "Size": 1}}])
    backend = VertexBackend(credentials=_Credentials(), project="demo-project", region="europe-west4")
    pushed = backend.push_image("torch-launcher-train:1", docker)
    repo = "europe-west4-docker.pkg.dev/demo-project/launcher/torch-launcher-train"
    assert pushed == f"{repo}@sha256:abc"
    assert docker.log == [
        ("login", "https://europe-west4-docker.pkg.dev", "oauth2accesstoken", "ya29.token"),
        ("get", "torch-launcher-train:1"), ("tag", repo, "1"), ("push", repo, "1", "oauth2accesstoken"),
    ]  # fmt: skip


def test_push_error_is_reported_with_a_fix() -> None:
    docker = _Docker([{"error": "denied: Permission 'artifactregistry.repositories.uploadArtifacts' denied"}])
    backend = VertexBackend(credentials=_Credentials(), project="demo-project", region="us-central1")
    with pytest.raises(LauncherError, match="uploadArtifacts"):
        backend.push_image("localhost:5000/train", docker)


def test_check_reports_credentials() -> None:
    check = VertexBackend(credentials=_Credentials(), project="demo-project").check()
    assert (check.sdk, check.credentials) == (True, True) and "demo-project" in check.message


# ---------------------------------------------------------------- example and entrypoint


def test_example_spec_plans() -> None:
    from launcher.spec import load_spec

    spec = load_spec(REPO / "examples" / "gcp.yaml", environ={"GOOGLE_CLOUD_PROJECT": "demo-project"}, cwd=REPO)
    plan = VertexBackend().plan(spec)
    pools = plan.request()["jobSpec"]["workerPoolSpecs"]
    assert pools[0]["machineSpec"] == {
        "machineType": "g2-standard-48",
        "acceleratorType": "NVIDIA_L4",
        "acceleratorCount": 4,
    }
    assert [p["replicaCount"] for p in pools] == ["1", "1"]
    assert plan.request()["jobSpec"]["scheduling"]["strategy"] == "SPOT"


@pytest.mark.parametrize(
    ("checkpoint_uri", "expected"),
    [(None, "/gcs/demo-staging/digits/checkpoints/digits"), ("gs://demo-ckpt/runs", None)],
)
def test_entrypoint_uses_the_gcs_mount_of_aip_checkpoint_dir_only_without_a_checkpoint_uri(
    checkpoint_uri: str | None, expected: str | None
) -> None:
    from launcher.runtime.entrypoint import parse_args, save_dir_for

    argv = ["--run-name", "digits", *(["--checkpoint-uri", checkpoint_uri] if checkpoint_uri else []), "--", "train"]
    save_dir = save_dir_for(parse_args(argv), {"AIP_CHECKPOINT_DIR": "gs://demo-staging/digits/checkpoints"})
    if expected:
        assert str(save_dir) == expected
    else:
        assert not str(save_dir).startswith("/gcs/")  # the checkpoint sync uploads from a local folder


def test_lazy_job_clients_use_each_regions_endpoint() -> None:
    from google.auth.credentials import AnonymousCredentials

    backend = VertexBackend(credentials=AnonymousCredentials())
    client = backend._jobs("europe-west4")  # built offline; no request is sent
    assert client.api_endpoint == "europe-west4-aiplatform.googleapis.com"
    assert backend._jobs("europe-west4") is client
    assert backend._jobs("us-central1").api_endpoint == "us-central1-aiplatform.googleapis.com"


# ---------------------------------------------------------------- SDK errors, translated in one place (issue 33)


@pytest.mark.parametrize(("call", "http", "status", "message", "fragment"), [
    ("create", 429, "RESOURCE_EXHAUSTED", "Quota exceeded for aiplatform.googleapis.com/custom_model_training_nvidia_t4_gpus",
     "Request more Vertex AI quota"),
    ("create", 403, "PERMISSION_DENIED", "Permission 'aiplatform.customJobs.create' denied", "roles/aiplatform.user"),
    ("create", 400, "INVALID_ARGUMENT", "Invalid machine type n1-standard-x", "launch --dry-run"),
    ("get", 404, "NOT_FOUND", "CustomJob does not exist", "Check gcp.project"),
    ("get", 503, "UNAVAILABLE", "The service is currently unavailable", "try again"),
    ("cancel", 403, "PERMISSION_DENIED", "Permission 'aiplatform.customJobs.cancel' denied", "roles/aiplatform.user"),
])  # fmt: skip
def test_vertex_errors_are_one_sentence_and_a_fix(fake: FakeGoogle, call: str, http: int, status: str, message: str,
                                                  fragment: str) -> None:  # fmt: skip
    backend = VertexBackend(**_clients(fake))
    plan = backend.plan(_spec(CASES["gcp_cpu"]), "digits-1")
    ref = JobRef("digits-1", "gcp", "projects/demo-project/locations/us-central1/customJobs/1000",
                 {"project": "demo-project", "region": "us-central1"}) if call != "create" else None  # fmt: skip
    if ref is not None:
        backend.submit(plan)
    fake.job_errors[call] = (http, status, message)
    action = {
        "create": lambda: backend.submit(plan),
        "get": lambda: backend.status(ref),
        "cancel": lambda: backend.cancel(ref),
    }
    with pytest.raises(LauncherError) as info:
        action[call]()
    assert type(info.value) is LauncherError and "\n" not in str(info.value)
    assert status in info.value.message and message in info.value.message and fragment in str(info.value.fix)


def test_a_quota_refusal_at_create_reads_as_capacity_for_the_supervisor(fake: FakeGoogle) -> None:
    backend = VertexBackend(**_clients(fake))
    fake.job_errors["create"] = (429, "RESOURCE_EXHAUSTED", "The following quota metrics exceed quota limits: gpus")
    with pytest.raises(LauncherError) as info:
        backend.submit(backend.plan(_spec(CASES["gcp_cpu"]), "digits-1"))
    assert backend.ending_of(info.value.message) is Ending.CAPACITY


@pytest.mark.parametrize(
    "error",
    [
        "ResourceExhausted",
        "PermissionDenied",
        "NotFound",
        "ServiceUnavailable",
        "DeadlineExceeded",
        "InternalServerError",
        "Unauthenticated",
        "Forbidden",
    ],
)
def test_every_api_core_error_type_is_translated(error: str) -> None:
    from google.api_core import exceptions

    from launcher.backends.gcp import _vertex_errors

    with pytest.raises(LauncherError) as info, _vertex_errors("create Vertex AI job x"):
        raise getattr(exceptions, error)("it went wrong")
    assert info.value.message.startswith("Could not create Vertex AI job x: ") and "it went wrong" in info.value.message
    assert info.value.fix and "See the Vertex AI message" not in info.value.fix, (error, info.value)


def test_credentials_and_network_errors_are_translated() -> None:
    from google.auth import exceptions

    from launcher.backends.gcp import _vertex_errors

    with (
        pytest.raises(LauncherError, match="no usable GCP credentials") as info,
        _vertex_errors("create Vertex AI job x"),
    ):
        raise exceptions.DefaultCredentialsError("Could not automatically determine credentials")
    assert "gcloud auth application-default login" in str(info.value.fix)
    with (
        pytest.raises(LauncherError, match="Could not create Vertex AI job x: connection refused"),
        _vertex_errors("create Vertex AI job x"),
    ):
        raise ConnectionError("connection refused")
