"""The real two-node Slurm of the slurm conformance tests: .ci/slurm-cluster.sh, and an OCI bundle of the built image.

The bundle (shared/SLURM.md, "Containers"): `BUNDLE/rootfs` is a read-only overlay mount of the Docker image's own
layers (no copy), `BUNDLE/config.json` is `runc spec --rootless` with the container sharing the node's network and
hostname (as pyxis and Apptainer do: the rendezvous finds node1/node2 by name), the image's environment, working
folder and command, /tmp and the work folder as tmpfs, /etc/hosts and /etc/resolv.conf bound read-only and the
shared folders bound read-write at their own paths; container root maps to the submitting user (22.05 does not
rewrite the mappings).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Sequence

__all__ = [
    "CLUSTER_SCRIPT",
    "cluster_available",
    "start_cluster",
    "stop_cluster",
    "make_bundle",
    "remove_bundle",
    "image_package_dir",
    "scontrol",
]

CLUSTER_SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "slurm-cluster.sh"


def cluster_available() -> str | None:
    """Why this machine cannot run the cluster, or None."""
    if os.geteuid() != 0:
        return "the cluster's daemons need root"
    missing = [
        tool
        for tool in ("slurmctld", "slurmd", "sbatch", "munged", "runc", "nsenter", "ip")
        if subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, check=False).returncode
    ]
    return f"missing {', '.join(missing)} (.ci/slurm-cluster.sh install)" if missing else None


def start_cluster() -> None:
    subprocess.run([str(CLUSTER_SCRIPT), "stop"], capture_output=True, check=False)  # leftovers of an interrupted run
    subprocess.run([str(CLUSTER_SCRIPT), "start"], check=True, timeout=180)


def stop_cluster() -> None:
    subprocess.run([str(CLUSTER_SCRIPT), "stop"], check=False, timeout=180)


def scontrol(*args: str) -> str:
    out = subprocess.run(["scontrol", *args], capture_output=True, text=True, check=True, timeout=60)
    return out.stdout


def _image(image: str) -> dict[str, Any]:
    out = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]


def image_package_dir(rootfs: Path) -> str:
    """Where the image installed the launcher package (its site-packages), as a path inside the container."""
    found = sorted(rootfs.glob("opt/venv/lib/python3*/site-packages/launcher")) or sorted(
        rootfs.glob("usr/**/site-packages/launcher")
    )
    if not found:
        raise RuntimeError("the image has no installed launcher package")
    return "/" + found[0].relative_to(rootfs).as_posix()


def make_bundle(image: str, bundle: Path, shared: Sequence[Path], source: Path | None = None) -> Path:
    """An OCI bundle of `image` at `bundle`; `shared` folders bound read-write; `source`: a launcher/ folder bound
    read-only over the image's installed package (a checkout not yet built into the image)."""
    info = _image(image)
    graph = info["GraphDriver"]
    if graph.get("Name") != "overlay2":
        raise RuntimeError(f"the image's storage driver is {graph.get('Name')}, not overlay2")
    layers = [graph["Data"]["UpperDir"], *filter(None, graph["Data"].get("LowerDir", "").split(":"))]
    # the files the container binds over, which Docker makes only when it runs one: a read-only root cannot get them
    points = bundle / "mountpoints"
    (points / "etc").mkdir(parents=True, exist_ok=True)
    for name in ("hosts", "resolv.conf"):
        (points / "etc" / name).touch()
    layers.insert(0, str(points))
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True, exist_ok=True)  # a real folder, not a symlink (Slurm sets root.path to it)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", "lowerdir=" + ":".join(layers), str(rootfs)], check=True)
    (bundle / "config.json").unlink(missing_ok=True)
    subprocess.run(["runc", "spec", "--rootless", "--bundle", str(bundle)], check=True)
    config = json.loads((bundle / "config.json").read_text())
    image_config = info["Config"]
    env = [e for e in image_config.get("Env") or [] if not e.startswith("HOME=")] + ["HOME=/tmp"]
    config["process"].update(
        terminal=False,
        cwd=image_config.get("WorkingDir") or "/",
        env=env,
        args=[*(image_config.get("Entrypoint") or []), *(image_config.get("Cmd") or [])],
        user={"uid": 0, "gid": 0},
    )
    config.pop("hostname", None)
    config["root"] = {"path": "rootfs", "readonly": True}
    linux = config["linux"]
    linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] not in ("network", "uts")]
    linux["uidMappings"] = [{"containerID": 0, "hostID": os.getuid(), "size": 1}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": os.getgid(), "size": 1}]
    mounts = [m for m in config["mounts"] if m["destination"] != "/dev/shm"]
    mounts.append(
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=1g"],
        }
    )
    for folder in ("/tmp", image_config.get("WorkingDir") or "/workspace"):
        mounts.append(
            {"destination": folder, "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]}
        )
    for path in ("/etc/hosts", "/etc/resolv.conf"):
        mounts.append({"destination": path, "type": "bind", "source": path, "options": ["rbind", "ro"]})
    for folder in shared:
        mounts.append({"destination": str(folder), "type": "bind", "source": str(folder), "options": ["rbind", "rw"]})
    if source is not None:
        mounts.append(
            {
                "destination": image_package_dir(rootfs),
                "type": "bind",
                "source": str(source),
                "options": ["rbind", "ro"],
            }
        )
    config["mounts"] = mounts
    (bundle / "config.json").write_text(json.dumps(config, indent=2))
    return bundle


def remove_bundle(bundle: Path) -> None:
    subprocess.run(["umount", str(bundle / "rootfs")], capture_output=True, check=False)
