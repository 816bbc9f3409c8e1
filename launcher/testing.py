"""The contract every backend keeps, as checks a backend's own tests can run.

This suite runs them over every registered backend (tests/backends/test_contract_kit.py);
a third-party plugin runs them in its tests the same way:

    from launcher.testing import check_backend

    def test_my_backend_keeps_the_launcher_contract(tmp_path):
        check_backend(MyBackend, {"name": "demo", "mybackend": {"zone": "z1"}}, tmp_path,
                      argv_of=lambda plan: plan.payload["args"], golden=Path(__file__).parent / "golden.yaml")

Each check raises AssertionError with a sentence saying what broke:

- plan is pure: the same plan with another environment, working folder and state
  dir, the spec not mutated, no SDK imported (the plan runs in a fresh interpreter);
- secrets only by reference: a secret's value never appears in the plan;
- the container's command line is what the entrypoint parses (launcher.contract),
  when the backend passes `argv_of` to find it in its request;
- a feature the backend declares unsupported is refused, one it declares ignored is
  noted in the plan, when the Launcher plans (launcher.backend.check_features);
- the plan matches a reviewed golden file (UPDATE_GOLDEN=1 writes it);
- example specs plan.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from launcher.api import Launcher
from launcher.backend import Backend, Feature
from launcher.contract import EntrypointArgs
from launcher.errors import LauncherError
from launcher.plan import Plan
from launcher.spec import JobSpec, load_spec, validate_spec

__all__ = [
    "check_backend",
    "check_plan_is_pure",
    "check_secrets_by_reference",
    "check_no_sdk_import_on_plan",
    "check_argv_round_trip",
    "check_declared_features",
    "check_golden",
    "check_example_specs",
]

SECRET_NAME, SECRET_VALUE = "LAUNCHER_KIT_TOKEN", "kit-s3cr3t-value-7f1c"
Make = Callable[[], Backend]


def _spec(raw: Mapping[str, Any], **extra: Any) -> JobSpec:
    return validate_spec({**raw, **extra}, Path("job.yaml"), Path("/srv"))


def check_plan_is_pure(make: Make, raw: Mapping[str, Any], tmp_path: Path) -> Plan:
    """The plan depends on the spec only: not on the environment, the cwd or the state dir."""
    spec = _spec(raw)
    before = spec.model_dump()
    first = make().plan(spec)
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    backend = make()  # made before the world changes: what it read then is all a plan may use
    try:
        os.environ.update(
            {"LAUNCHER_STATE_DIR": str(tmp_path / "other-state"), SECRET_NAME: SECRET_VALUE, "AWS_REGION": "xx-kit-1"}
        )
        os.chdir(tmp_path)
        second = backend.plan(spec)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
    assert spec.model_dump() == before, f"{type(backend).__name__}.plan changed the spec it was given"
    assert first.to_json() == second.to_json(), (
        f"{type(backend).__name__}.plan read the environment, the cwd or the state dir"
    )
    return first


def check_secrets_by_reference(make: Make, raw: Mapping[str, Any]) -> Plan:
    """A secret's value is read at submit, never put in the plan; the plan names the secret."""
    saved = os.environ.get(SECRET_NAME)
    os.environ[SECRET_NAME] = SECRET_VALUE
    try:
        plan = make().plan(_spec(raw, secrets=[*raw.get("secrets", []), SECRET_NAME]))
    finally:
        os.environ.pop(SECRET_NAME) if saved is None else os.environ.__setitem__(SECRET_NAME, saved)
    assert SECRET_NAME in plan.secrets, "the plan does not list the spec's secrets (Plan.secrets)"
    for text in (plan.to_json(), plan.to_yaml(), json.dumps(plan.request(), default=str)):
        assert SECRET_VALUE not in text, (
            "a secret's value is in the plan; pass it by reference (launcher.contract.secret_ref)"
        )
    return plan


def check_no_sdk_import_on_plan(
    backend: type[Backend], raw: Mapping[str, Any], sdk_modules: Sequence[str] = ()
) -> None:
    """Planning (a dry run) imports none of the backend's SDK modules."""
    modules = list(sdk_modules or backend.sdk_modules)
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        f"from {backend.__module__} import {backend.__qualname__} as B\n"
        "from launcher.spec import validate_spec\n"
        f"B().plan(validate_spec(json.loads({json.dumps(json.dumps(dict(raw)))}), Path('job.yaml'), Path('/srv')))\n"
        f"print(json.dumps(sorted(m for m in sys.modules if any(m == s or m.startswith(s + '.') for s in {modules!r}))))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # this interpreter's import path
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, f"planning in a fresh interpreter failed: {out.stderr.strip()[-500:]}"
    imported = json.loads(out.stdout.strip().splitlines()[-1])
    assert not imported, (
        f"{backend.__name__}.plan imported its SDK ({', '.join(imported)}); import it lazily, on submit"
    )


ASKING = {Feature.SPOT: {"spot": True}, Feature.MULTI_NODE: {"nodes": 2}}  # resources asking for each feature


def check_declared_features(make: Make, raw: Mapping[str, Any]) -> None:
    """What the backend declares unsupported is refused, what it declares ignored is noted, by the Launcher."""
    for feature, resources in ASKING.items():
        spec = _spec(raw, resources={**raw.get("resources", {}), **resources})
        backend = make()
        if feature in backend.unsupported:
            try:
                Launcher(backend).plan(spec)
            except LauncherError as exc:
                assert f"does not support {feature.value}" in exc.message, (
                    f"{feature.value} refused, but not by the core: {exc}"
                )
            else:
                raise AssertionError(
                    f"{type(backend).__name__} declares {feature.value} unsupported, yet a spec asking for it planned"
                )
        elif feature in backend.ignored:
            notes = Launcher(backend).plan(spec).notes
            assert any(n.startswith(f"{feature.value} is ignored") for n in notes), (
                f"the plan does not note that {feature.value} is ignored"
            )


def check_argv_round_trip(plan: Plan, argv: Sequence[str]) -> EntrypointArgs:
    """The command line in the request is exactly what the entrypoint parses back."""
    parsed = EntrypointArgs.parse(argv)
    assert parsed.to_argv() == list(argv), f"the command line is not the contract's own form: {' '.join(argv)}"
    assert parsed.run_name == plan.spec.name, "--run-name is not the spec's name (the run folder must not move)"
    assert parsed.spec_hash == plan.spec.spec_hash(), "--spec-hash is not the spec's hash"
    return parsed


def check_golden(plan: Plan, path: Path) -> None:
    """The plan is the reviewed one; UPDATE_GOLDEN=1 (re)writes the file, whose diff you then review."""
    text = plan.to_yaml()
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert path.exists(), f"no golden plan {path} yet; write it with UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text(), f"the plan differs from {path}; if intended, rerun with UPDATE_GOLDEN=1 and review"


def check_example_specs(make: Make, paths: Iterable[Path], environ: Mapping[str, str] | None = None) -> None:
    """Every example spec for this backend loads and plans."""
    for path in paths:
        make().plan(load_spec(path, environ=dict(environ or {}), cwd=path.parent))


def check_backend(
    backend: type[Backend],
    raw: Mapping[str, Any],
    tmp_path: Path,
    *,
    make: Make | None = None,
    argv_of: Callable[[Plan], Sequence[str]] | None = None,
    golden: Path | None = None,
    examples: Iterable[Path] = (),
    examples_env: Mapping[str, str] | None = None,
) -> Plan:
    """All the checks, for a spec `raw` (a dict as in a YAML file) that this backend can plan."""
    make = make or backend
    plan = check_plan_is_pure(make, raw, tmp_path)
    check_secrets_by_reference(make, raw)
    check_no_sdk_import_on_plan(backend, raw)
    check_declared_features(make, raw)
    if argv_of is not None:
        check_argv_round_trip(plan, argv_of(plan))
    if golden is not None:
        check_golden(plan, golden)
    check_example_specs(make, examples, examples_env)
    return plan
