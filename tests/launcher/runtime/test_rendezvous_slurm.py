"""Slurm's node list -> the rendezvous: the rank from the hostname, never from SLURM_NODEID (stale on 22.05's OCI
containers: the batch step's value on every node)."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.runtime import rendezvous
from launcher.runtime.rendezvous import expand_hostlist

NOWHERE = Path("/nonexistent")


@pytest.mark.parametrize(
    "hostlist, hosts",
    [
        ("node1", ["node1"]),
        ("node[1-2]", ["node1", "node2"]),
        ("node[1-2,5]", ["node1", "node2", "node5"]),
        ("a[01-03],b1", ["a01", "a02", "a03", "b1"]),
        ("gpu[008-010]", ["gpu008", "gpu009", "gpu010"]),
        ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
        ("x-[3,1],y.z", ["x-3", "x-1", "y.z"]),
    ],
)
def test_hostlists_expand_as_slurm_writes_them(hostlist: str, hosts: list[str]) -> None:
    assert expand_hostlist(hostlist) == hosts


@pytest.mark.parametrize("bad", ["node[1-2", "node[a-b]", "node[1-]"])
def test_a_broken_hostlist_is_an_error_not_a_guess(bad: str) -> None:
    with pytest.raises(ValueError):
        expand_hostlist(bad)


def test_the_rank_is_the_hostnames_index_in_the_step_node_list() -> None:
    env = {
        "SLURM_JOB_ID": "42",
        "SLURM_STEP_NODELIST": "node[1-2]",
        "SLURM_JOB_NODELIST": "node[1-3]",
        "SLURM_NODEID": "0",
        "SLURMD_NODENAME": "node1",
    }  # what 22.05 leaves stale inside an OCI container
    second = rendezvous.detect(env, resource_config=NOWHERE, hostname="node2")
    assert (second.platform, second.nnodes, second.node_rank, second.master_addr) == ("slurm", 2, 1, "node1")
    assert second.master_port == 29500 + 42 and second.torchrun_args(1)[:4] == ["--nnodes", "2", "--node_rank", "1"]
    first = rendezvous.detect({**env, "MASTER_PORT": "3000"}, resource_config=NOWHERE, hostname="node1.cluster.example")
    assert (first.node_rank, first.master_port) == (0, 3000)
    job_only = rendezvous.detect(
        {"SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "c[01-04]"}, resource_config=NOWHERE, hostname="c03"
    )
    assert (job_only.nnodes, job_only.node_rank, job_only.master_addr) == (4, 2, "c01")


def test_a_host_outside_the_node_list_says_so() -> None:
    with pytest.raises(RuntimeError, match="not in the Slurm node list"):
        rendezvous.detect(
            {"SLURM_JOB_ID": "1", "SLURM_STEP_NODELIST": "node[1-2]"}, resource_config=NOWHERE, hostname="login"
        )


def test_azure_ml_and_plain_variables_still_win_where_they_did() -> None:
    azure = rendezvous.detect(
        {
            "AZUREML_RUN_ID": "r",
            "SLURM_JOB_ID": "1",
            "SLURM_JOB_NODELIST": "n1",
            "NODE_RANK": "0",
            "MASTER_ADDR": "10.0.0.4",
            "WORLD_SIZE": "1",
        },
        resource_config=NOWHERE,
        hostname="n1",
    )
    assert azure.platform == "azureml"
    plain = rendezvous.detect({"MASTER_ADDR": "10.0.0.4", "NODE_RANK": "1", "WORLD_SIZE": "2"}, resource_config=NOWHERE)
    assert (plain.platform, plain.node_rank) == ("azureml", 1)
