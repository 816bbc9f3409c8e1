"""SageMaker's resourceconfig.json -> the rendezvous and the NCCL/EFA environment its own toolkit would set."""

from __future__ import annotations

import json
from pathlib import Path

from launcher.runtime import rendezvous


def resource_config(tmp_path: Path, **extra: object) -> Path:
    path = tmp_path / "resourceconfig.json"
    body = {"current_host": "algo-2", "hosts": ["algo-2", "algo-1"], "network_interface_name": "eth0", **extra}
    path.write_text(json.dumps(body))
    return path


def test_sagemaker_nodes_get_nccl_socket_ifname_from_the_resource_config(tmp_path: Path) -> None:
    rdzv = rendezvous.detect({}, resource_config=resource_config(tmp_path, current_instance_type="ml.g5.2xlarge"))
    assert (rdzv.platform, rdzv.nnodes, rdzv.node_rank, rdzv.master_addr) == ("sagemaker", 2, 1, "algo-1")
    assert dict(rdzv.environment) == {"NCCL_SOCKET_IFNAME": "eth0"}  # g5.2xlarge has no EFA


def test_efa_instances_get_the_efa_provider_and_rdma_where_it_exists(tmp_path: Path) -> None:
    p5 = rendezvous.detect({}, resource_config=resource_config(tmp_path, current_instance_type="ml.p5.48xlarge"))
    assert dict(p5.environment) == {"NCCL_SOCKET_IFNAME": "eth0", "FI_PROVIDER": "efa"}
    p4d = rendezvous.detect({}, resource_config=resource_config(tmp_path, current_instance_type="ml.p4d.24xlarge"))
    assert dict(p4d.environment) == {"NCCL_SOCKET_IFNAME": "eth0", "FI_PROVIDER": "efa",
                                     "FI_EFA_USE_DEVICE_RDMA": "1", "RDMAV_FORK_SAFE": "1"}  # fmt: skip


def test_other_platforms_add_no_environment() -> None:
    vertex = {
        "CLUSTER_SPEC": json.dumps(
            {"cluster": {"workerpool0": ["h0:2222"]}, "task": {"type": "workerpool0", "index": 0}}
        )
    }
    for environ in ({}, vertex, {"MASTER_ADDR": "10.0.0.4", "NODE_RANK": "1", "WORLD_SIZE": "2"}):
        assert dict(rendezvous.detect(environ, resource_config=Path("/nonexistent")).environment) == {}
