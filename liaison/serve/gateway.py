"""`liaison gateway serve`: wire config, keys, audit store, gRPC and NATS into the gateway.

Beside the node run its watchers: live gRPC health (``exchange.runtime.health``),
sampled metrics (``gateway.metrics``) and key/certificate expiry; the
``/metrics`` endpoint is served when the config has a ``[metrics]`` section.
"""

from __future__ import annotations

import structlog

from exchange.core.wire import gateway_client_name
from exchange.nats.transport import Transport, connect
from exchange.runtime.dirstore import DirectoryFolder
from exchange.runtime.grpcutil import new_server
from exchange.runtime.health import probe
from exchange.runtime.lifecycle import load_directory, nats_connect_args, run_node
from exchange.runtime.metrics import metrics_endpoint, node_watchers, run_with
from gateway.audit.postgres import PostgresAuditStore
from gateway.audit.sqlite import SQLiteAuditStore
from gateway.audit.store import AuditStore
from gateway.config import GatewayConfig
from gateway.console import start_console_from_config
from gateway.metrics import GatewayMetrics, sample_gateway
from gateway.node import GatewayNode
from gateway.service import (
    AUDIT_ACCESS,
    AUDIT_SERVICE,
    DIRECTORY_ACCESS,
    DIRECTORY_SERVICE,
    AuditServicer,
    DirectoryServicer,
)
from keys.keystore import open_keystore, passphrase_from

__all__ = ["open_store", "serve_gateway"]

log = structlog.get_logger()


def open_store(cfg: GatewayConfig) -> AuditStore:
    if cfg.pg_dsn:
        return PostgresAuditStore(cfg.pg_dsn)
    return SQLiteAuditStore(cfg.store)


async def serve_gateway(cfg: GatewayConfig) -> None:
    identity = open_keystore(cfg.keys_dir, passphrase_from(cfg.passphrase_file))
    # The gateway's state folder (beside its audit store) keeps every directory it accepted.
    copies = DirectoryFolder(cfg.store.parent / "directories")
    directory = load_directory(cfg.directory, copies.stored())
    store = open_store(cfg)
    try:
        metrics = GatewayMetrics(cfg.gateway)
        node = GatewayNode(
            gateway=cfg.gateway,
            metrics=metrics,
            identity=identity,
            directory=directory,
            store=store,
            tree_head_interval_s=cfg.tree_head_interval_s,
            stream_replicas=cfg.nats.replicas,
            save_directory=copies.save,
        )
        tls = (cfg.tls.ca, cfg.tls.cert, cfg.tls.key) if cfg.tls else None
        server, health, port = new_server(cfg.grpc_listen, [AUDIT_SERVICE, DIRECTORY_SERVICE], tls)
        secure = cfg.tls is not None
        AuditServicer(node, AUDIT_ACCESS if secure else None).add_to_server(server)
        DirectoryServicer(node, DIRECTORY_ACCESS if secure else None).add_to_server(server)
        # The read-only web console, when configured, shares this loop and closes before the store.
        console = await start_console_from_config(node, cfg.console) if cfg.console else None
        services = [AUDIT_SERVICE, DIRECTORY_SERVICE]
        certs = {"grpc": cfg.tls.cert if cfg.tls else None, "nats": cfg.nats.cert}

        def store_check() -> None:
            node.check_store_writes()  # appends failing (disk full, read-only): not accepting
            store.latest_tree_head()  # and a read works

        async def run(transport: Transport) -> None:
            watchers = node_watchers(
                metrics,
                health=health,
                services=services,
                prober=lambda: probe(transport, node.directory, cfg.gateway, store_check),
                ready=node.ready,
                sample=lambda: sample_gateway(metrics, transport, directory=directory, store=store),
                identity=identity,
                cert_files=certs,
            )
            await run_with(node.run(transport), watchers)

        try:
            async with metrics_endpoint(cfg.metrics, metrics.registry) as endpoint:
                await run_node(
                    role="gateway",
                    server=server,
                    health_servicer=health,
                    services=services,
                    connect_nats=lambda: connect(
                        cfg.nats.servers, gateway_client_name(cfg.gateway), **nats_connect_args(cfg.nats)
                    ),
                    run=run,
                    ready=node.ready,
                    gateway=cfg.gateway,
                    grpc_port=port,
                    directory=directory.directory.version,
                    metrics_port=endpoint.port if endpoint else None,
                )
        finally:
            if console is not None:
                await console.close()
    finally:
        store.close()
