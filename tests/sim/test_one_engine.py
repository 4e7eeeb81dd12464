"""One engine: the simulator's hosts run the very classes ``paxctl node start`` runs."""

from __future__ import annotations

from paxctl.server.config import NodeConfig
from paxctl.server.driver import Driver
from paxctl.server.engine import NodeEngine
from paxctl.server.node_server import NodeServer
from paxctl.server.replica import Replica
from paxctl.server.requests import ClientRequests
from paxctl.storage.store import Storage
from paxctl.testing.sim.world import SimSpec, World
from paxctl.testing.sim.znodes import ZnodeWorld


def _parts(engine: object) -> tuple[type, ...]:
    assert isinstance(engine, NodeEngine)
    return (
        type(engine),
        type(engine.driver),
        type(engine.replica),
        type(engine.clients),
        type(engine.driver.disk),
    )


def test_the_znodes_hosts_and_paxctl_node_start_run_the_same_engine(tmp_path):
    server = NodeServer(
        NodeConfig(
            node_id=1,
            data_dir=str(tmp_path / "n1"),
            peers={1: ("127.0.0.1", 1)},  # never bound: the server is built, not run
            client=("127.0.0.1", 2),
            bootstrap=True,
        )
    )
    try:
        world = ZnodeWorld(SimSpec(seed=1, workload="znodes"))
        for host in world.hosts.values():
            engine = host.engine  # type: ignore[attr-defined]
            assert _parts(engine) == _parts(server.engine)
            assert _parts(engine) == (NodeEngine, Driver, Replica, ClientRequests, Storage)
            assert host.driver is engine.driver  # the host's Ready loop is the engine's
    finally:
        server.storage.close()


def test_the_chain_hosts_run_the_same_ready_loop():
    world = World(SimSpec(seed=1))
    for host in world.hosts.values():
        assert type(host.driver) is Driver and type(host.driver.disk) is Storage
