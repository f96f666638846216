"""`liaison office serve`: wire config, keys, store, gRPC and NATS into a running node.

Beside the node run its watchers: live gRPC health (``exchange.runtime.health``),
sampled metrics and key/certificate expiry (``exchange.runtime.metrics``); the
``/metrics`` endpoint is served when the config has a ``[metrics]`` section.
"""

from __future__ import annotations

import structlog

from exchange.core.wire import office_client_name
from exchange.nats.transport import Transport, connect
from exchange.office.config import OfficeConfig
from exchange.office.metrics import OfficeMetrics, out_queue_depth, sample_office
from exchange.office.node import OfficeNode
from exchange.office.service import SERVICE_NAME, ExchangeServicer, agency_access
from exchange.office.store import OfficeStore
from exchange.runtime.grpcutil import new_server
from exchange.runtime.health import probe
from exchange.runtime.lifecycle import load_directory, nats_connect_args, run_node
from exchange.runtime.metrics import metrics_endpoint, node_watchers, run_with
from keys.keystore import open_keystore, passphrase_from

__all__ = ["serve_office"]

log = structlog.get_logger()


async def serve_office(cfg: OfficeConfig) -> None:
    identity = open_keystore(cfg.keys_dir, passphrase_from(cfg.passphrase_file))
    store = OfficeStore(cfg.store)
    try:
        directory = load_directory(cfg.directory, store.stored_directories())
        metrics = OfficeMetrics(cfg.office)
        node = OfficeNode(
            office=cfg.office,
            identity=identity,
            directory=directory,
            store=store,
            metrics=metrics,
            suite=cfg.suite,
        )
        tls = (cfg.tls.ca, cfg.tls.cert, cfg.tls.key) if cfg.tls else None
        server, health, port = new_server(cfg.grpc_listen, [SERVICE_NAME], tls)
        access = agency_access(cfg.tls.clients) if cfg.tls else None
        ExchangeServicer(node, access).add_to_server(server)
        certs = {"grpc": cfg.tls.cert if cfg.tls else None, "nats": cfg.nats.cert}

        async def run(transport: Transport) -> None:
            watchers = node_watchers(
                metrics,
                health=health,
                services=[SERVICE_NAME],
                prober=lambda: probe(transport, node.directory, cfg.office, lambda: out_queue_depth(store)),
                ready=node.connected,
                sample=lambda: sample_office(
                    metrics, transport, office=cfg.office, directory=directory, store=store
                ),
                identity=identity,
                cert_files=certs,
            )
            await run_with(node.run(transport), watchers)

        async with metrics_endpoint(cfg.metrics, metrics.registry) as endpoint:
            await run_node(
                role="office",
                server=server,
                health_servicer=health,
                services=[SERVICE_NAME],
                connect_nats=lambda: connect(
                    cfg.nats.servers, office_client_name(cfg.office), **nats_connect_args(cfg.nats)
                ),
                run=run,
                ready=node.connected,
                office=cfg.office,
                grpc_port=port,
                directory=directory.directory.version,
                metrics_port=endpoint.port if endpoint else None,
            )
    finally:
        store.close()
