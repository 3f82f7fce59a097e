"""The server.properties of a one-node Kafka (broker and KRaft controller in one process)."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from voxbus.devinfra.ports import LOOPBACK


def random_cluster_id() -> str:
    """A cluster id as `kafka-storage random-uuid` makes it: 16 random bytes, base64url.

    Like Kafka's `Uuid.randomUuid`, never one that starts with "-": the command line would read
    it as an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def server_properties(
    broker_port: int, controller_port: int, log_dir: Path, *, proxied: tuple[int, int] | None = None
) -> str:
    """The broker config. A static `controller.quorum.voters` makes StorageTool format
    without `--standalone` (that flag is for the dynamic `controller.quorum.bootstrap.servers`).

    `proxied` (listen port, advertised port): a second listener, PROXIED, for clients that reach
    the broker through a TCP proxy. A client is told to reconnect to the address advertised for
    the listener it came in on: through this one, the proxy's, so it stays behind the proxy."""
    listeners = f"PLAINTEXT://{LOOPBACK}:{broker_port},CONTROLLER://{LOOPBACK}:{controller_port}"
    advertised = f"PLAINTEXT://{LOOPBACK}:{broker_port}"
    protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if proxied is not None:
        listeners += f",PROXIED://{LOOPBACK}:{proxied[0]}"
        advertised += f",PROXIED://{LOOPBACK}:{proxied[1]}"
        protocols += ",PROXIED:PLAINTEXT"
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{LOOPBACK}:{controller_port}",
        "listeners": listeners,
        "advertised.listeners": advertised,
        "listener.security.protocol.map": protocols,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": "1",
        "auto.create.topics.enable": "true",
        # one partition each: creating the default 50 delays the first group join by seconds
        "offsets.topic.num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())
