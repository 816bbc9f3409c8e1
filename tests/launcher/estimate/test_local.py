from __future__ import annotations

import subprocess

import pytest

from launcher.errors import LauncherError
from launcher.estimate.local import (
    LocalCosts,
    LocalGpu,
    config_path,
    detect_gpus,
    hourly_price,
    load_config,
    local_offers,
)

from .fakes import spec


def test_config_path_precedence(tmp_path) -> None:
    assert config_path({"LAUNCHER_CONFIG": "/x/c.yaml", "XDG_CONFIG_HOME": "/y"}).as_posix() == "/x/c.yaml"
    assert config_path({"XDG_CONFIG_HOME": "/y"}).as_posix() == "/y/launcher/config.yaml"


def test_defaults_without_a_file(tmp_path) -> None:
    assert load_config(tmp_path / "missing.yaml") == LocalCosts()


def test_config_file_overrides_and_rejects_typos(tmp_path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("local:\n  electricity_usd_per_kwh: 0.30\n  host_watts: 100\n")
    costs = load_config(path)
    assert (costs.electricity_usd_per_kwh, costs.host_watts, costs.hardware_usd) == (0.30, 100, 3000.0)
    path.write_text("local:\n  electricity_usd_per_kwhh: 0.30\n")
    with pytest.raises(LauncherError, match="electricity_usd_per_kwhh"):
        load_config(path)


def test_hourly_price_is_electricity_plus_amortisation() -> None:
    costs = LocalCosts(
        electricity_usd_per_kwh=0.20, host_watts=100, hardware_usd=8760, lifetime_years=1, utilisation=0.5
    )
    total, power, wear = hourly_price(costs, 400.0)
    assert power == pytest.approx(0.5 * 0.20)
    assert wear == pytest.approx(2.0)
    assert total == pytest.approx(2.1)


def test_detect_gpus_parses_nvidia_smi() -> None:
    seen = []

    def run(args):  # type: ignore[no-untyped-def]
        seen.append(args)
        return "NVIDIA A10G, 300.00\nTesla T4, [N/A]\n"

    assert detect_gpus(run) == [LocalGpu("NVIDIA A10G", 300.0), LocalGpu("Tesla T4", None)]
    assert "--query-gpu=name,power.limit" in seen[0]


def test_detect_gpus_without_a_driver() -> None:
    def run(args):  # type: ignore[no-untyped-def]
        raise subprocess.CalledProcessError(9, args)

    assert detect_gpus(run) == []


def test_cpu_offer_when_no_gpu_is_asked() -> None:
    (o,) = local_offers(spec(resources={"gpus": 0}), LocalCosts(), gpus=[])
    assert (o.backend, o.gpus, o.gpu_type, o.details["device"]) == ("local", 0, None, "cpu")
    assert o.price_per_hour == pytest.approx(hourly_price(LocalCosts(), 0.0)[0])


def test_gpu_offer_uses_detected_power() -> None:
    gpus = [LocalGpu("NVIDIA A10G", 300.0), LocalGpu("NVIDIA A10G", 300.0)]
    (o,) = local_offers(spec(resources={"gpus": 2, "gpu_type": "A10G"}), LocalCosts(), gpus=gpus)
    assert (o.gpus, o.gpu_type) == (2, "A10G")
    assert o.details["electricity_per_hour"] == pytest.approx((600 + 150) / 1000 * 0.17, abs=1e-4)


@pytest.mark.parametrize(
    ("resources", "message"),
    [({"gpus": 2}, "has 1 GPU"), ({"gpus": 1, "gpu_type": "H100"}, "not H100"), ({"nodes": 2}, "one node")],
)
def test_local_cannot_run(resources, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(LauncherError, match=message):
        local_offers(spec(resources=resources), LocalCosts(), gpus=[LocalGpu("Tesla T4", 70.0)])
