"""The Python API: plan, submit, follow and wait for a job (run from the repository root).

python examples/python_api.py [BACKEND]
"""

from __future__ import annotations

import sys

from launcher import JobSpec, Launcher


def main(backend: str = "local") -> int:
    spec = JobSpec.from_yaml(
        "examples/quickstart.yaml", overrides=["name=api-try", "train.epochs=1", "train.fraction=0.2"]
    )
    launcher = Launcher(backend=backend)
    print(launcher.plan(spec).to_yaml())  # the exact request, secrets redacted
    job = launcher.submit(spec)
    for line in job.logs(follow=True):
        print(line)
    status = job.wait()
    print(status.state, job.id)
    return status.result_code()


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
