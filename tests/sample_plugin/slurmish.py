"""A sample third-party backend: one module, one entry point, nothing else.

It "submits" a batch script to an imaginary cluster scheduler: the plan is the
script's argv (built from the container contract) and its environment, with
secrets only as references. Installing it takes only an entry point in the
plugin's own package metadata:

    [project.entry-points."launcher.backends"]
    slurmish = "slurmish:SlurmishBackend"
"""

from __future__ import annotations

from typing import Iterator, Mapping

from pydantic import Field

from launcher.backend import Backend, BackendOptions
from launcher.contract import ENTRYPOINT, SECRET_REFS_VARIABLE, EntrypointArgs, secret_ref, secret_refs_value
from launcher.plan import JobRef, JobState, JobStatus, Plan
from launcher.spec import JobSpec

__all__ = ["SlurmishBackend", "SlurmishOptions"]


class SlurmishOptions(BackendOptions):
    partition: str = Field("gpu", description="the scheduler's partition")


class SlurmishBackend(Backend):
    name = "slurmish"
    options_model = SlurmishOptions
    sdk_modules = ("slurmish_sdk",)  # never imported by plan()

    def __init__(self) -> None:
        self.submitted: list[Plan] = []

    def plan(self, spec: JobSpec, job_id: str | None = None) -> Plan:
        opts: SlurmishOptions = self.options(spec)  # type: ignore[assignment]
        contract = EntrypointArgs.for_spec(spec, gpus=spec.resources.gpus, checkpoint_uri=spec.checkpoint.uri,
                                           max_runtime=spec.limits.max_runtime)  # fmt: skip
        env = dict(spec.env)
        if spec.secrets:
            env[SECRET_REFS_VARIABLE] = secret_refs_value({n: secret_ref("env", n) for n in spec.secrets})
        payload = {
            "partition": opts.partition,
            "nodes": spec.resources.nodes,
            "argv": [*ENTRYPOINT, *contract.to_argv()],
            "env": env,
        }
        return Plan(self.name, job_id or spec.name, spec, payload, secrets=tuple(spec.secrets))

    def submit(self, plan: Plan, secrets: Mapping[str, str] | None = None) -> JobRef:
        self.submitted.append(plan)
        return JobRef(plan.job_name, self.name, f"slurm-{len(self.submitted)}")

    def status(self, ref: JobRef) -> JobStatus:
        return JobStatus(JobState.SUCCEEDED)

    def logs(self, ref: JobRef, follow: bool = False) -> Iterator[str]:
        yield from ()

    def cancel(self, ref: JobRef) -> None:
        pass


def argv_of(plan: Plan) -> list[str]:
    """Where this backend keeps the entrypoint's arguments in its request (for launcher.testing)."""
    request: Mapping[str, list[str]] = plan.request()
    return list(request["argv"][len(ENTRYPOINT) :])
