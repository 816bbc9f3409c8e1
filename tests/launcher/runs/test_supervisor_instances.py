"""The supervisor's instance choice after a capacity error, on the aws backend's real catalog and plans: the next
fitting type without a wait, the user's named type kept (with backoff), backoff once every type was tried, the
same choice after a restart; and the budget of a resumed attempt, estimated on the epochs left."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import pytest

from launcher.api import Launcher
from launcher.backend import Backend, BackendCheck, Offer
from launcher.backends.aws import SageMakerBackend
from launcher.backends.azure import AzureMLBackend
from launcher.backends.cloud import CloudBackend
from launcher.backends.gcp import VertexBackend
from launcher.catalog import load_catalog
from launcher.estimate.model import estimate
from launcher.plan import Ending, JobRef, JobState, JobStatus, Plan
from launcher.runs.supervisor import Supervisor
from launcher.spec import JobSpec, validate_spec
from launcher.state.jobs import JobRegistry

P, C = Ending.PREEMPTED, Ending.CAPACITY
REGION = "us-east-1"
AWS = {"region": REGION, "role_arn": "arn:aws:iam::123456789012:role/SageMakerRole"}
IMAGE = f"123456789012.dkr.ecr.{REGION}.amazonaws.com/torch-launcher-train:1"
CATALOG = load_catalog("aws")


def on_demand(instance: str) -> float:
    return float(CATALOG["instances"][instance]["prices"][REGION]["on_demand"])


class Platform:
    """What the cloud remembers across supervisors: each submitted job ends as the next entry of `script` says."""

    def __init__(self, script: list[Ending | None]) -> None:
        self.script, self.ends, self.instances = list(script), {}, []  # type: ignore[var-annotated]


class ScriptedSageMaker(SageMakerBackend):
    """The real SageMaker plan and catalog; submit and status answered by a Platform."""

    def __init__(self, platform: Platform) -> None:
        super().__init__(catalog=CATALOG, pushed_image="", sleep=lambda s: None, poll_s=0)
        self.platform = platform

    def submit(self, plan: Plan, secrets: Mapping[str, str] | None = None) -> JobRef:
        self.platform.instances.append(plan.payload["ResourceConfig"]["InstanceType"])
        self.platform.ends[plan.job_name] = self.platform.script.pop(0)
        return JobRef(plan.job_name, self.name, plan.job_name, {"region": REGION})

    def status(self, ref: JobRef) -> JobStatus:
        ending = self.platform.ends[ref.id]
        return (
            JobStatus(JobState.SUCCEEDED) if ending is None else JobStatus(JobState.FAILED, ending.value, ending=ending)
        )

    def logs(self, ref: JobRef, follow: bool = False) -> Iterator[str]:
        return iter(())

    def cancel(self, ref: JobRef) -> None: ...

    def check(self) -> BackendCheck:
        return BackendCheck(self.name, True, True, "ready")


def _spec(tmp_path: Path, resources: dict[str, Any], aws: dict[str, Any] | None = None, **more: Any) -> JobSpec:
    raw = {"name": "cap", "image": IMAGE, "train": {"epochs": 30}, "resources": resources, "aws": {**AWS, **(aws or {})},
           "recovery": {"max_attempts": 5, "after_failures": 9, "backoff": {"initial": 10, "max": 900}}, **more}  # fmt: skip
    return validate_spec(raw, None, tmp_path)


def _supervisor(
    spec: JobSpec, jobs: JobRegistry, platform: Platform, waits: list[float], run_id: str | None = None
) -> Supervisor:
    make = lambda name: Launcher(backend=ScriptedSageMaker(platform), jobs=jobs)  # noqa: E731
    kwargs: dict[str, Any] = {"stream_logs": False, "poll_s": 0, "sleep": waits.append}
    return Supervisor(run_id, jobs, make, **kwargs) if run_id else Supervisor.start(spec, "aws", jobs, make, **kwargs)


def test_capacity_on_the_catalogs_choice_tries_the_next_fit_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    platform, waits, jobs = Platform([C, None]), [], JobRegistry(tmp_path / "jobs.db")  # type: ignore[var-annotated]
    spec = _spec(tmp_path, {"gpus": 1, "gpu_type": "A10G"})
    assert _supervisor(spec, jobs, platform, waits).run() == 0
    assert platform.instances == ["ml.g5.xlarge", "ml.g5.2xlarge"] and waits == []  # another pool: no backoff
    err = capsys.readouterr().err
    line = f"[recovery] no capacity for ml.g5.xlarge on aws: attempt 2 tries ml.g5.2xlarge (the catalog's next fit, ${on_demand('ml.g5.2xlarge'):.2f}/h)"
    assert line in err and "waiting" not in err
    run = jobs.runs()[0]
    first, second = jobs.attempts(run.id)
    assert (first.instance, second.instance) == ("ml.g5.xlarge", "ml.g5.2xlarge")
    assert "instance_type" not in first.spec["aws"] and second.spec["aws"]["instance_type"] == "ml.g5.2xlarge"
    assert "instance_type" not in run.spec["aws"]  # the run's spec stays as written
    assert second.price_per_hour == pytest.approx(on_demand("ml.g5.2xlarge"))  # priced on the instance it used
    from launcher.cli.jobs import _run_status  # noqa: PLC0415

    monkeypatch.setenv("COLUMNS", "160")  # rich shortens cells to fit the terminal: here the content is checked
    _run_status(jobs, run.id)  # `launch status RUN`
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["attempt", "backend", "instance"] == rows[1][:3] and [r[:3] for r in rows[2:4]] == [
        ["1", "aws", "ml.g5.xlarge"],
        ["2", "aws", "ml.g5.2xlarge"],
    ]


def test_a_named_instance_is_kept_and_retried_after_backoff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    platform, waits, jobs = Platform([C, C, None]), [], JobRegistry(tmp_path / "jobs.db")  # type: ignore[var-annotated]
    spec = _spec(tmp_path, {"gpus": 1, "gpu_type": "A10G"}, {"instance_type": "ml.g5.4xlarge"})
    assert _supervisor(spec, jobs, platform, waits).run() == 0
    assert platform.instances == ["ml.g5.4xlarge"] * 3 and waits == [10, 20]
    err = capsys.readouterr().err
    assert "tries" not in err and "[recovery] no capacity on aws (2 in a row): waiting 20 s before attempt 3" in err


def test_once_every_fitting_type_was_tried_the_last_is_retried_after_backoff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    platform, waits, jobs = Platform([C, C, C, C, None]), [], JobRegistry(tmp_path / "jobs.db")  # type: ignore[var-annotated]
    spec = _spec(tmp_path, {"gpus": 4, "gpu_type": "A10G"})  # two types have 4 A10G: ml.g5.12xlarge and ml.g5.24xlarge
    assert _supervisor(spec, jobs, platform, waits).run() == 0
    assert platform.instances == ["ml.g5.12xlarge"] + ["ml.g5.24xlarge"] * 4
    assert waits == [10, 20, 40]  # counted from the first retry of the same type
    assert (
        "no capacity for ml.g5.24xlarge on aws (1 in a row, no other fitting type to try): waiting 10 s"
        in capsys.readouterr().err
    )


def test_a_next_fit_beyond_the_budget_is_skipped_for_the_same_type_after_backoff(tmp_path: Path,
                                                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    platform, waits, jobs = Platform([C, None]), [], JobRegistry(tmp_path / "jobs.db")  # type: ignore[var-annotated]
    costs = [_aws_estimate(tmp_path, instance) for instance in ("ml.g5.xlarge", "ml.g5.2xlarge")]
    spec = _spec(tmp_path, {"gpus": 1, "gpu_type": "A10G"}, limits={"max_cost": sum(costs) / 2})
    assert _supervisor(spec, jobs, platform, waits).run() == 0
    assert platform.instances == ["ml.g5.xlarge", "ml.g5.xlarge"] and waits == [10]  # not a run ended by the budget
    err = capsys.readouterr().err
    assert (
        f"skipping ml.g5.2xlarge on aws, the catalog's next fit: Attempt 2 on aws is estimated at ${costs[1]:.2f}"
        in err
    )
    assert "no capacity for ml.g5.xlarge on aws (1 in a row, no other fitting type to try): waiting 10 s" in err


def _aws_estimate(tmp_path: Path, instance: str) -> float:
    spec = _spec(tmp_path, {"gpus": 1, "gpu_type": "A10G"}, {"instance_type": instance})
    rows = estimate(spec, [ScriptedSageMaker(Platform([]))])
    assert len(rows) == 1 and rows[0].ok, rows[0].error
    return float(rows[0].cost)


def test_a_restarted_supervisor_keeps_the_instance_choice(tmp_path: Path) -> None:
    platform, waits, jobs = Platform([C, P, C, None]), [], JobRegistry(tmp_path / "jobs.db")  # type: ignore[var-annotated]
    spec = _spec(tmp_path, {"gpus": 1, "gpu_type": "A10G"})
    first = _supervisor(spec, jobs, platform, waits)
    while len(platform.instances) < 2:  # attempt 1 (capacity), then attempt 2 submitted on the next fit
        assert first.step() is None
    del first  # the supervisor is killed while attempt 2 runs; a new one reads the registry
    assert _supervisor(spec, jobs, platform, waits, jobs.runs()[0].id).run() == 0
    # attempt 2 was preempted: attempt 3 stays on its type; its capacity error moves on to a type neither tried
    assert platform.instances == ["ml.g5.xlarge", "ml.g5.2xlarge", "ml.g5.2xlarge", "ml.g5.4xlarge"] and waits == []
    assert [a.instance for a in jobs.attempts(jobs.runs()[0].id)] == platform.instances


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_each_alternative_plans_on_its_instance_and_the_first_is_the_plans_own(cloud: str) -> None:
    backend, spec = _cloud(cloud, {"gpus": 1, "gpu_type": "T4"})
    alternatives = backend.alternatives(spec)
    rows = [backend.catalog["instances"][alt.instance] for alt in alternatives]
    assert len(alternatives) > 1 and all(row["gpus"] == 1 and row["gpu_type"] == "T4" for row in rows)
    region = spec.options_section(cloud)["region"]
    prices = [row["prices"][region]["on_demand"] for row in rows]
    assert (
        prices == sorted(prices) and [alt.price_per_hour for alt in alternatives] == prices
    )  # the catalog rule's order
    assert _planned(cloud, backend.plan(spec)) == alternatives[0].instance
    for alt in alternatives[1:]:
        section = {**spec.options_section(cloud), **alt.options}
        assert _planned(cloud, backend.plan(spec.model_copy(update={cloud: section}))) == alt.instance


def test_no_alternatives_where_the_spec_names_the_instance_or_for_local(tmp_path: Path) -> None:
    aws, spec = _cloud("aws", {"gpus": 1})
    assert aws.alternatives(spec.model_copy(update={"aws": {**spec.aws, "instance_type": "ml.g5.xlarge"}})) == []
    gcp, spec = _cloud("gcp", {"gpus": 1})
    assert gcp.alternatives(spec.model_copy(update={"gcp": {**spec.gcp, "accelerator_type": "NVIDIA_L4"}})) == []
    azure, spec = _cloud("azure", {"gpus": 1})
    assert azure.alternatives(spec.model_copy(update={"azure": {**spec.azure, "compute": "gpu-cluster"}})) == []
    from launcher.backends import registry  # noqa: PLC0415

    assert registry.create("local").alternatives(spec) == []


def _cloud(cloud: str, resources: dict[str, Any]) -> tuple[CloudBackend, JobSpec]:
    sections = {"aws": AWS, "gcp": {"project": "demo-project", "region": "us-central1"},
                "azure": {"subscription_id": "00000000-0000-0000-0000-000000000000", "resource_group": "rg", "workspace": "vision-ws",
                          "region": "eastus"}}  # fmt: skip
    made = {"aws": SageMakerBackend, "gcp": VertexBackend, "azure": AzureMLBackend}[cloud](
        catalog=load_catalog(cloud), pushed_image=""
    )
    raw = {"name": "alt", "image": "registry.example/train:1", "resources": resources, cloud: sections[cloud]}
    return made, JobSpec.model_validate(raw)


def _planned(cloud: str, plan: Plan) -> str:
    """The catalog instance a plan runs on, read from its native request."""
    if cloud == "aws":
        return str(plan.payload["ResourceConfig"]["InstanceType"])
    if cloud == "azure":
        return str(plan.payload["resources"]["instance_type"])
    machine = plan.payload["jobSpec"]["workerPoolSpecs"][0]["machineSpec"]
    catalog = load_catalog("gcp")["instances"]
    return next(name for name, row in catalog.items() if row["machine_type"] == machine["machineType"]
                and row["accelerator_type"] == machine.get("acceleratorType") and row["gpus"] == machine.get("acceleratorCount", 0))  # fmt: skip


# ---------------------------------------------------------------- the budget of a resumed attempt


class Resumed(Backend):
    """One ml.g5.xlarge at its catalog price. The first job trains `done` of the epochs (its results.csv rows in the
    run folder), reports `cost_usd` as SageMaker reports billable time, and is reclaimed; the next one succeeds."""

    name = "aws"

    def __init__(self, run_folder: Path, done: int, cost: float) -> None:
        self.run_folder, self.done, self.cost, self.submitted = run_folder, done, cost, []  # type: ignore[var-annotated]

    def plan(self, spec: Any, job_id: str | None = None) -> Plan:
        return Plan(self.name, job_id or spec.name, spec, {"InstanceType": "ml.g5.xlarge"})

    def submit(self, plan: Plan, secrets: Mapping[str, str] | None = None) -> JobRef:
        if not self.submitted and self.done:
            rows = "".join(f"{epoch},0.5\n" for epoch in range(1, self.done + 1))
            self.run_folder.mkdir(parents=True, exist_ok=True)
            (self.run_folder / "results.csv").write_text("epoch,top1\n" + rows)
        self.submitted.append(plan.job_name)
        return JobRef(plan.job_name, self.name, f"native-{plan.job_name}")

    def status(self, ref: JobRef) -> JobStatus:
        if ref.id != self.submitted[0]:
            return JobStatus(JobState.SUCCEEDED)
        return JobStatus(JobState.FAILED, "reclaimed", 1, details={"metrics": {"cost_usd": self.cost}}, ending=P)

    def logs(self, ref: JobRef, follow: bool = False) -> Iterator[str]:
        return iter(())

    def cancel(self, ref: JobRef) -> None: ...

    def offers(self, spec: Any) -> list[Offer]:
        return [Offer(self.name, "ml.g5.xlarge", "A10G", 1, 1, on_demand("ml.g5.xlarge"), region=REGION)]


def _budget_run(tmp_path: Path, done: int, cost: float, max_cost: float) -> tuple[int, str]:
    raw = {"name": "res", "train": {"epochs": 100}, "resources": {"gpus": 1, "gpu_type": "A10G"},
           "checkpoint": {"uri": str(tmp_path / "ckpts")}, "limits": {"max_cost": max_cost}, "recovery": {"max_attempts": 2}}  # fmt: skip
    spec, jobs = validate_spec(raw, None, tmp_path), JobRegistry(tmp_path / "jobs.db")
    code = Launcher(backend=Resumed(tmp_path / "ckpts" / "res", done, cost), jobs=jobs).supervise(spec)
    return code, jobs.runs()[0].message


def _estimate(epochs: int, tmp_path: Path) -> float:
    raw = {"name": "res", "train": {"epochs": epochs}, "resources": {"gpus": 1, "gpu_type": "A10G"}}
    rows = estimate(validate_spec(raw, None, tmp_path), [Resumed(tmp_path, 0, 0.0)])
    assert rows[0].ok, rows[0].error
    return float(rows[0].cost)


def test_a_resumed_attempt_is_estimated_on_the_epochs_left(tmp_path: Path) -> None:
    full, rest = _estimate(100, tmp_path), _estimate(40, tmp_path)
    assert rest < full
    spent = full - rest  # the first attempt paid for its 60 epochs; what is left lies between the two estimates
    limit = spent + (rest + full) / 2
    code, message = _budget_run(tmp_path / "admitted", done=60, cost=spent, max_cost=limit)
    assert code == 0 and "succeeded" in message
    code, message = _budget_run(tmp_path / "no-progress", done=0, cost=spent, max_cost=limit)
    assert code == 3 and f"estimated at ${full:.2f}, more than what is left" in message  # the whole job's estimate


def test_a_resumed_attempt_whose_epochs_left_cost_more_than_what_is_left_is_still_refused(tmp_path: Path) -> None:
    full, rest = _estimate(100, tmp_path), _estimate(40, tmp_path)
    code, message = _budget_run(tmp_path, done=60, cost=full, max_cost=full + 0.9 * rest)
    assert (
        code == 3
        and f"estimated at ${rest:.2f} for the 40 epoch(s) left, more than what is left of limits.max_cost" in message
    )


# ---------------------------------------------------------------- what is left of the budget, per attempt


class Billed(ScriptedSageMaker):
    """Each job reports what SageMaker billed for it (`cost_usd`), as describe_training_job's billable time does."""

    def __init__(self, platform: Platform, billed: float) -> None:
        super().__init__(platform)
        self.billed = billed

    def status(self, ref: JobRef) -> JobStatus:
        status = super().status(ref)
        return JobStatus(
            status.state, status.message, details={"metrics": {"cost_usd": self.billed}}, ending=status.ending
        )


def test_each_attempt_is_capped_by_the_platform_at_what_is_left_of_the_runs_budget(tmp_path: Path) -> None:
    """An attempt's spec carries what is left of max_cost, which SageMaker enforces as MaxRuntimeInSeconds: the run's
    total stays within its budget even where an attempt runs longer than its estimate."""
    platform, jobs = Platform([P, None]), JobRegistry(tmp_path / "jobs.db")
    spec = _spec(tmp_path, {"gpus": 1, "gpu_type": "A10G"}, train={"epochs": 1}, limits={"max_cost": 5.0})
    make = lambda name: Launcher(backend=Billed(platform, 2.0), jobs=jobs)  # noqa: E731
    assert Supervisor.start(spec, "aws", jobs, make, stream_logs=False, poll_s=0).run() == 0
    first, second = jobs.attempts(jobs.runs()[0].id)
    assert first.spec["limits"]["max_cost"] == 5.0 and second.spec["limits"]["max_cost"] == 3.0
    assert jobs.runs()[0].spec["limits"]["max_cost"] == 5.0  # the run's budget stays as written
    stop = [
        Billed(platform, 0).plan(JobSpec.model_validate(a.spec)).payload["StoppingCondition"] for a in (first, second)
    ]
    price = CATALOG["instances"]["ml.g5.xlarge"]["prices"][REGION]["spot" if spec.resources.spot else "on_demand"]
    assert [s["MaxRuntimeInSeconds"] for s in stop] == [int(5.0 / price * 3600), int(3.0 / price * 3600)]


def test_a_spent_budget_submits_no_more_attempts(tmp_path: Path) -> None:
    platform, jobs = Platform([P, None]), JobRegistry(tmp_path / "jobs.db")
    spec = _spec(tmp_path, {"gpus": 1, "gpu_type": "A10G"}, train={"epochs": 1}, limits={"max_cost": 5.0})
    make = lambda name: Launcher(backend=Billed(platform, 5.0), jobs=jobs)  # noqa: E731
    assert Supervisor.start(spec, "aws", jobs, make, stream_logs=False, poll_s=0).run() == 3
    assert len(platform.instances) == 1
    assert (
        "limits.max_cost ($5.00) is spent ($5.00 over 1 attempt(s)): attempt 2 is not submitted"
        in jobs.runs()[0].message
    )


def test_an_attempt_that_cannot_be_estimated_says_why_and_what_to_do(tmp_path: Path) -> None:
    platform, jobs = Platform([None]), JobRegistry(tmp_path / "jobs.db")
    spec = _spec(tmp_path, {"gpus": 0}, {"instance_type": "ml.m5.xlarge"}, limits={"max_cost": 5.0})
    make = lambda name: Launcher(backend=ScriptedSageMaker(platform), jobs=jobs)  # noqa: E731
    assert Supervisor.start(spec, "aws", jobs, make, stream_logs=False, poll_s=0).run() == 3
    message = jobs.runs()[0].message
    assert platform.instances == [] and "Cannot estimate attempt 1 on aws" in message, message
    assert "ml.m5.xlarge CPU" in message and "--ignore-budget" in message, message
    ignored = Supervisor.start(spec, "aws", jobs, make, stream_logs=False, poll_s=0, check_budget=False)
    assert ignored.run() == 0 and platform.instances == ["ml.m5.xlarge"]
