"""The standard gRPC health-checking and reflection messages, by plain values.

Process wiring, health watchers and status probes set and read serving
states and list a server's services through these functions, so that only
the codec touches generated protobuf classes (``grpc_health``'s and
``grpc_reflection``'s included). It opens no channel and serves nothing:
the stubs and servicers stay with their callers.
"""

from __future__ import annotations

from typing import Final

from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

__all__ = [
    "HEALTH_SERVICE",
    "NOT_SERVING",
    "REFLECTION_SERVICE",
    "SERVING",
    "health_check_request",
    "health_status_name",
    "is_serving",
    "list_services_request",
    "listed_services",
    "serving_status",
]

# Full gRPC names of the two standard services every node serves beside its own.
HEALTH_SERVICE: Final = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
REFLECTION_SERVICE: Final = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"].full_name

# Serving states as the health servicer's ``set(name, status)`` takes them.
SERVING: Final = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING: Final = health_pb2.HealthCheckResponse.NOT_SERVING


def serving_status(serving: bool) -> health_pb2.HealthCheckResponse.ServingStatus.ValueType:
    return SERVING if serving else NOT_SERVING


def health_check_request(service: str = "") -> health_pb2.HealthCheckRequest:
    """Health.Check's request for ``service`` ("" = the whole server)."""
    return health_pb2.HealthCheckRequest(service=service)


def is_serving(reply: health_pb2.HealthCheckResponse) -> bool:
    return bool(reply.status == SERVING)


def health_status_name(reply: health_pb2.HealthCheckResponse) -> str:
    """The state's name: SERVING, NOT_SERVING, UNKNOWN or SERVICE_UNKNOWN."""
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))


def list_services_request() -> reflection_pb2.ServerReflectionRequest:
    return reflection_pb2.ServerReflectionRequest(list_services="")


def listed_services(reply: reflection_pb2.ServerReflectionResponse) -> list[str]:
    """The full names of the services a list_services reply names (empty names dropped)."""
    return [s.name for s in reply.list_services_response.service if s.name]
