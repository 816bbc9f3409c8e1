"""The local row: what a run on this machine costs in electricity and hardware wear.

    $/hour = (GPU watts x GPUs + host watts) / 1000 x $/kWh
           + hardware price / (lifetime years x 8760 h x utilisation)

The figures come from the user config file, `$LAUNCHER_CONFIG` or
`~/.config/launcher/config.yaml`, section `local`; every key is optional:

    local:
      electricity_usd_per_kwh: 0.17   # default: about the 2024 US residential average (EIA)
      host_watts: 150                 # CPU, memory, disks, fans under load
      gpu_watts: null                 # per GPU; null = nvidia-smi's power limit, else the GPU table
      hardware_usd: 3000              # what the machine cost
      lifetime_years: 4               # depreciation period
      utilisation: 0.5                # share of its life the machine spends on jobs
      startup_s: 10                   # until `launch profile` has measured this machine's own

GPUs are found with `nvidia-smi` (no torch import); without one the row is the CPU.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from launcher.backend import Offer
from launcher.errors import LauncherError
from launcher.estimate.throughput import canonical_device, gpu_table
from launcher.spec import JobSpec

__all__ = ["LocalCosts", "LocalGpu", "config_path", "load_config", "detect_gpus", "hourly_price", "local_offers"]

# The default $/kWh (0.17) is close to the US average residential retail price of 2024 in the EIA's
# Electric Power Monthly, table 5.6.A (https://www.eia.gov/electricity/monthly/epm_table_grapher.php?t=epmt_5_6_a);
# set your own tariff in the config file.


class LocalCosts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    electricity_usd_per_kwh: float = Field(0.17, ge=0)
    host_watts: float = Field(150.0, ge=0)
    gpu_watts: float | None = Field(None, ge=0)
    hardware_usd: float = Field(3000.0, ge=0)
    lifetime_years: float = Field(4.0, gt=0)
    utilisation: float = Field(0.5, gt=0, le=1)
    startup_s: float = Field(10.0, ge=0)


@dataclass(frozen=True)
class LocalGpu:
    name: str
    watts: float | None


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    if environ.get("LAUNCHER_CONFIG"):
        return Path(environ["LAUNCHER_CONFIG"])
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "launcher" / "config.yaml"


def load_config(path: Path | None = None) -> LocalCosts:
    """The `local` section of the user config; defaults when the file does not exist."""
    path = path or config_path()
    if not path.exists():
        return LocalCosts()
    try:
        raw: Any = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise LauncherError(
            f"{path} is not valid YAML ({exc}).", "Fix the file or delete it to use the defaults."
        ) from None
    section = raw.get("local", {}) if isinstance(raw, dict) else None
    try:
        return LocalCosts.model_validate(section or {})
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise LauncherError(
            f"{path}: local.{where}: {problem['msg']}.", "See `launch estimate --help` for the keys."
        ) from None


Runner = Callable[[Sequence[str]], str]


def _nvidia_smi(args: Sequence[str]) -> str:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=20, check=True).stdout


def detect_gpus(run: Runner | None = None) -> list[LocalGpu]:
    """This machine's NVIDIA GPUs, from nvidia-smi; [] without a driver."""
    if run is None:
        if shutil.which("nvidia-smi") is None:
            return []
        run = _nvidia_smi
    try:
        out = run(["nvidia-smi", "--query-gpu=name,power.limit", "--format=csv,noheader,nounits"])
    except (OSError, subprocess.SubprocessError):
        return []
    return [_gpu(line) for line in out.splitlines() if line.strip()]


def _gpu(line: str) -> LocalGpu:
    name, _, watts = line.partition(",")
    try:
        return LocalGpu(name.strip(), float(watts))
    except ValueError:
        return LocalGpu(name.strip(), None)  # "[N/A]" on some boards


def hourly_price(costs: LocalCosts, gpu_watts_total: float) -> tuple[float, float, float]:
    """(total, electricity, amortisation) in USD per hour."""
    electricity = (gpu_watts_total + costs.host_watts) / 1000.0 * costs.electricity_usd_per_kwh
    amortisation = costs.hardware_usd / (costs.lifetime_years * 8760.0 * costs.utilisation)
    return electricity + amortisation, electricity, amortisation


def _gpu_watts(costs: LocalCosts, gpu: LocalGpu) -> float:
    if costs.gpu_watts is not None:
        return costs.gpu_watts
    if gpu.watts:
        return gpu.watts
    entry = gpu_table()["gpus"].get(canonical_device(gpu.name), {})
    return float(entry.get("watts", 250.0))


def local_offers(spec: JobSpec, costs: LocalCosts | None = None, gpus: list[LocalGpu] | None = None) -> list[Offer]:
    """The one local option for `spec`, or a LauncherError saying why this machine cannot run it."""
    costs = costs or load_config()
    gpus = detect_gpus() if gpus is None else gpus
    want = spec.resources
    if want.nodes > 1:
        raise LauncherError(
            f"The local backend runs one node, but the spec asks for {want.nodes}.", "Use a cloud backend."
        )
    if want.gpus == 0:
        price, power, wear = hourly_price(costs, 0.0)
        return [_offer("cpu", None, 0, price, power, wear, costs)]
    if len(gpus) < want.gpus:
        raise LauncherError(
            f"This machine has {len(gpus)} GPU(s); the spec asks for {want.gpus}.", "Lower resources.gpus."
        )
    chosen = gpus[: want.gpus]
    gpu_type = canonical_device(chosen[0].name)
    if want.gpu_type and want.gpu_type != gpu_type:
        raise LauncherError(
            f"This machine's GPU is {chosen[0].name}, not {want.gpu_type}.", "Remove resources.gpu_type to use it."
        )
    price, power, wear = hourly_price(costs, sum(_gpu_watts(costs, g) for g in chosen))
    return [_offer(chosen[0].name, gpu_type, want.gpus, price, power, wear, costs)]


def _offer(
    device: str, gpu_type: str | None, gpus: int, price: float, power: float, wear: float, costs: LocalCosts
) -> Offer:
    details = {
        "device": canonical_device(device),
        "device_name": device,
        "electricity_per_hour": round(power, 4),
        "amortisation_per_hour": round(wear, 4),
        "startup_from_profile": True,
    }
    if not gpus:  # the cores the job gets here: the rough CPU figure (throughput.py) is per core
        from launcher.runtime.cpu import usable_cpus  # noqa: PLC0415

        details["cpus"] = usable_cpus()
    name = "this machine" + (f" ({gpus}x {gpu_type})" if gpus else " (CPU)")
    return Offer(
        "local", name, gpu_type, gpus, 1, price, spot=False, region="", startup_s=costs.startup_s, details=details
    )
