"""A fake cloud backend for estimator tests: real Backend subclass, offers from a list."""

from __future__ import annotations

from typing import Iterator, Mapping

from launcher.backend import Backend, Offer
from launcher.errors import LauncherError
from launcher.plan import JobRef, JobState, JobStatus, Plan
from launcher.spec import JobSpec

__all__ = ["FakeBackend", "PluginBackend", "offer", "spec"]


def spec(**train: object) -> JobSpec:
    limits = train.pop("limits", {})
    resources = train.pop("resources", {"gpus": 1, "gpu_type": "A10G"})
    base = {"model": "resnet50", "data": "digits", "epochs": 10, "imgsz": 224, "batch": 32}
    return JobSpec.model_validate({"name": "est", "train": {**base, **train}, "resources": resources, "limits": limits})


def offer(instance: str = "fake.g1", price: float = 2.0, gpus: int = 1, nodes: int = 1, spot: bool = False,
          gpu_type: str = "A10G", startup_s: float = 100.0, **details: object) -> Offer:  # fmt: skip
    return Offer(
        "fake", instance, gpu_type, gpus, nodes, price, spot=spot, region="r1", startup_s=startup_s, details=details
    )


class FakeBackend(Backend):
    name = "fake"

    def __init__(self, offers: list[Offer] | None = None, error: str | None = None) -> None:
        self._offers = offers or []
        self._error = error
        self.submitted: list[Plan] = []

    def offers(self, spec: JobSpec) -> list[Offer]:
        if self._error:
            raise LauncherError(self._error)
        return list(self._offers)

    def plan(self, spec: JobSpec, job_id: str | None = None) -> Plan:
        instance = self._offers[0].instance if self._offers else "none"
        return Plan(self.name, job_id or spec.name, spec, {"InstanceType": instance})

    def submit(self, plan: Plan, secrets: Mapping[str, str] | None = None) -> JobRef:
        self.submitted.append(plan)
        return JobRef(plan.job_name, self.name, plan.job_name)

    def status(self, ref: JobRef) -> JobStatus:
        return JobStatus(JobState.SUCCEEDED)

    def logs(self, ref: JobRef, follow: bool = False) -> Iterator[str]:
        return iter(())

    def cancel(self, ref: JobRef) -> None:
        return None


class PluginBackend(FakeBackend):
    """Installed through a real entry point in CLI tests (see test_cli.py)."""

    name = "fakecloud"

    def __init__(self) -> None:
        super().__init__([
            Offer("fakecloud", "fc.small", "A10G", 1, 1, 1.0, region="r1", startup_s=60.0),
            Offer("fakecloud", "fc.large", "A10G", 4, 1, 5.0, region="r1", startup_s=60.0),
        ])  # fmt: skip
