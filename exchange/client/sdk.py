"""Python client SDK for agency systems: typed async and sync clients.

``AsyncClient`` talks grpc.aio to an office node's ExchangeService and
returns ``exchange.core.api`` types; ``Client`` is the same API for code without
an event loop (it runs one on a private thread). gRPC errors become
``RemoteError`` with the status name and the node's one-line reason.
Requests and responses are built and read by ``exchange.core.codec``; this module
uses only the generated stub.

    from exchange.client.sdk import Client
    with Client.from_lab("lab", "ru-mvd-dushanbe") as c:
        sent = c.send_alert(["tj-mvd-moscow"], category=AlertCategory.DRUG_TRAFFICKING,
                            priority=Priority.FLASH, subject="...", text="...")
        print(c.status(sent.message_id))
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Coroutine, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

import grpc

from exchange._pb.liaison.v1 import exchange_pb2_grpc
from exchange.client.connection import ClientTls, aio_channel, lab_endpoint
from exchange.core.api import (
    AttachmentRef,
    CaseEntry,
    Delivery,
    MessageStatus,
    OfficeList,
    SendRequest,
    SendResult,
)
from exchange.core.codec import attachment as attach_codec
from exchange.core.codec import service as codec
from exchange.core.errors import ConfigError, RemoteError
from exchange.core.model import (
    Alert,
    AlertCategory,
    CaseMessage,
    ConsularRequest,
    ConsularRequestType,
    Handling,
    Person,
    Priority,
)
from exchange.core.wire import MAX_GRPC_MESSAGE_BYTES

__all__ = ["AsyncClient", "Client", "ClientTls", "lab_endpoint", "remote_error"]

T = TypeVar("T")
DEFAULT_TIMEOUT_S = 15.0
UPLOAD_PIECE_BYTES = 1 << 20  # what one UploadAttachmentRequest message carries


class Readable(Protocol):
    """A binary file object, or anything that reads like one."""

    def read(self, n: int, /) -> bytes: ...


def remote_error(e: grpc.aio.AioRpcError | grpc.RpcError) -> RemoteError:
    """A gRPC failure as RemoteError: status name and the node's one-line reason."""
    code = e.code() if hasattr(e, "code") else None
    details = e.details() if hasattr(e, "details") else str(e)
    return RemoteError(code.name if code else "UNKNOWN", details or "no detail")


class AsyncClient:
    """An agency system's connection to its office node (grpc.aio)."""

    def __init__(
        self, target: str, *, tls: ClientTls | None = None, timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        options: list[tuple[str, Any]] = [
            ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_BYTES),
        ]
        self._channel = aio_channel(target, tls, options)
        self._stub = exchange_pb2_grpc.ExchangeServiceStub(self._channel)
        self.timeout = timeout

    @classmethod
    def from_lab(cls, lab_dir: Path | str, office: str) -> AsyncClient:
        target, tls = lab_endpoint(Path(lab_dir), office)
        return cls(target, tls=tls)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _call(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except grpc.aio.AioRpcError as e:
            raise remote_error(e) from None

    # --- sending -------------------------------------------------------------------

    async def send(self, request: SendRequest) -> SendResult:
        # The RPC follows the body's kind; the codec builds its request.
        body, stub, t = request.body, self._stub, self.timeout
        call: Awaitable[codec.SendResponsePb]
        if isinstance(body, Alert):
            call = stub.SendAlert(codec.send_alert_request_to_pb(request, body), timeout=t)
        elif isinstance(body, CaseMessage):
            call = stub.SendCaseMessage(codec.send_case_message_request_to_pb(request, body), timeout=t)
        else:
            consular = codec.send_consular_request_request_to_pb(request, body)
            call = stub.SendConsularRequest(consular, timeout=t)
        return codec.send_result_from_pb(await self._call(call))

    async def send_alert(
        self,
        recipients: Sequence[str],
        *,
        category: AlertCategory,
        priority: Priority,
        subject: str,
        text: str,
        persons: Sequence[Person] = (),
        case_id: str = "",
        ttl_s: int = 0,
        handling: Handling = Handling.OFFICIAL,
        idempotency_key: str = "",
    ) -> SendResult:
        alert = Alert(category, priority, subject, text, tuple(persons))
        return await self.send(
            SendRequest(alert, tuple(recipients), case_id, "", ttl_s, handling, idempotency_key)
        )

    async def send_case_message(
        self,
        recipients: Sequence[str],
        *,
        case_id: str,
        text: str,
        thread: str = "",
        subject: str = "",
        in_reply_to: str = "",
        idempotency_key: str = "",
        attachments: Sequence[str] = (),
    ) -> SendResult:
        """``attachments``: ids returned by ``upload_attachment`` (sealed into the message)."""
        body = CaseMessage(case_id=case_id, text=text, thread=thread, subject=subject)
        return await self.send(
            SendRequest(
                body,
                tuple(recipients),
                case_id,
                in_reply_to,
                idempotency_key=idempotency_key,
                attachments=tuple(attachments),
            )
        )

    # --- attachments ---------------------------------------------------------------

    async def upload_attachment(
        self, source: Path | str | Readable, *, name: str = "", media_type: str = "application/octet-stream"
    ) -> AttachmentRef:
        """Stream a file (path or binary file object) to the office node, one chunk at a time."""
        opened = await asyncio.to_thread(Path(source).open, "rb") if isinstance(source, Path | str) else None
        f: Readable = opened if opened is not None else source  # type: ignore[assignment]
        name = Path(str(name or getattr(f, "name", "") or "attachment")).name

        async def pieces() -> AsyncIterator[Any]:
            data = await asyncio.to_thread(f.read, UPLOAD_PIECE_BYTES)
            yield attach_codec.upload_chunk_to_pb(data, name, media_type)
            while data:
                data = await asyncio.to_thread(f.read, UPLOAD_PIECE_BYTES)
                if data:
                    yield attach_codec.upload_chunk_to_pb(data)

        try:
            pb = await self._call(self._stub.UploadAttachment(pieces()))
        finally:
            if opened is not None:
                opened.close()
        return attach_codec.upload_response_from_pb(pb)

    async def download_attachment(self, message_id: str, index: int = 0, *, to: Path | str) -> AttachmentRef:
        """Stream attachment ``index`` of a received message to ``to``; the file appears only
        complete and verified (written as ``<to>.part`` and renamed at the end)."""
        target = Path(to)
        part = target.with_name(target.name + ".part")
        out = _create_new(part)  # before the call: a planted file or symlink is never ours to remove
        call = self._stub.DownloadAttachment(attach_codec.download_request_to_pb(message_id, index))
        ref: AttachmentRef | None = None
        digest = hashlib.sha256()
        size = 0
        try:
            with out:
                async for pb in call:
                    piece_ref, data = attach_codec.download_chunk_from_pb(pb)
                    ref = piece_ref or ref
                    if data:
                        digest.update(data)
                        size += len(data)
                        await asyncio.to_thread(out.write, data)
            checked = _check_download(ref, size, digest.digest(), f"attachment {index} of {message_id}")
            part.replace(target)
        except grpc.aio.AioRpcError as e:
            part.unlink(missing_ok=True)
            raise remote_error(e) from None
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        finally:
            call.cancel()
        return checked

    async def send_consular_request(
        self,
        recipients: Sequence[str],
        *,
        citizen: Person,
        request_type: ConsularRequestType,
        text: str,
        subject: str = "",
        case_id: str = "",
        idempotency_key: str = "",
    ) -> SendResult:
        body = ConsularRequest(citizen=citizen, request_type=request_type, text=text, subject=subject)
        return await self.send(SendRequest(body, tuple(recipients), case_id, idempotency_key=idempotency_key))

    # --- receiving -----------------------------------------------------------------

    async def subscribe(
        self, after_cursor: int = 0, *, include_read: bool = False
    ) -> AsyncGenerator[Delivery]:
        """Deliveries after ``after_cursor``, then live ones; resume with the last cursor seen."""
        call = self._stub.Subscribe(codec.subscribe_request_to_pb(after_cursor, include_read))
        try:
            async for pb in call:
                yield codec.subscribe_response_from_pb(pb)
        except grpc.aio.AioRpcError as e:
            raise remote_error(e) from None
        finally:
            call.cancel()

    async def ack(self, message_id: str) -> None:
        await self._call(
            self._stub.Acknowledge(codec.acknowledge_request_to_pb(message_id), timeout=self.timeout)
        )

    async def status(self, message_id: str) -> MessageStatus:
        pb = await self._call(
            self._stub.GetStatus(codec.status_request_to_pb(message_id), timeout=self.timeout)
        )
        return codec.status_from_pb(pb)

    async def offices(self) -> OfficeList:
        pb = await self._call(self._stub.ListOffices(codec.offices_request_to_pb(), timeout=self.timeout))
        return codec.offices_from_pb(pb)

    async def case(self, case_id: str) -> list[CaseEntry]:
        pb = await self._call(self._stub.GetCase(codec.case_request_to_pb(case_id), timeout=self.timeout))
        return codec.case_from_pb(pb)


# O_EXCL: never reuse a file another user (or a crashed run) left; O_NOFOLLOW: never write
# through a symlink planted at the .part name (to ~/.bashrc, say).
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _create_new(path: Path) -> io.BufferedWriter:
    """Open ``path`` for writing only if nothing (not even a dangling symlink) is there yet."""
    try:
        fd = os.open(path, _NEW_FILE_FLAGS, 0o600)
    except FileExistsError:
        raise ConfigError(f"{path} already exists (a stale download or a planted link): remove it") from None
    except OSError as e:
        raise ConfigError(f"cannot create {path}: {e.strerror}") from None
    return os.fdopen(fd, "wb")


def _check_download(ref: AttachmentRef | None, size: int, sha256: bytes, what: str) -> AttachmentRef:
    """Defence in depth: the node checked every chunk; the client checks the whole once more."""
    if ref is not None and size == ref.size and (not ref.sha256 or sha256 == ref.sha256):
        return ref
    raise RemoteError("DATA_LOSS", f"{what} arrived incomplete or altered")


class Client:
    """The same API without an event loop: calls run on a private loop thread."""

    def __init__(
        self, target: str, *, tls: ClientTls | None = None, timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="liaison-client", daemon=True)
        self._thread.start()
        self._async = self._run(self._make(target, tls, timeout))

    @staticmethod
    async def _make(target: str, tls: ClientTls | None, deadline_s: float) -> AsyncClient:
        # Built on the loop thread: grpc.aio channels belong to the loop that creates them.
        return AsyncClient(target, tls=tls, timeout=deadline_s)

    @classmethod
    def from_lab(cls, lab_dir: Path | str, office: str) -> Client:
        target, tls = lab_endpoint(Path(lab_dir), office)
        return cls(target, tls=tls)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        self._run(self._async.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def send(self, request: SendRequest) -> SendResult:
        return self._run(self._async.send(request))

    def send_alert(self, recipients: Sequence[str], **kw: Any) -> SendResult:
        return self._run(self._async.send_alert(recipients, **kw))

    def send_case_message(self, recipients: Sequence[str], **kw: Any) -> SendResult:
        return self._run(self._async.send_case_message(recipients, **kw))

    def send_consular_request(self, recipients: Sequence[str], **kw: Any) -> SendResult:
        return self._run(self._async.send_consular_request(recipients, **kw))

    def upload_attachment(self, source: Path | str | Readable, **kw: Any) -> AttachmentRef:
        return self._run(self._async.upload_attachment(source, **kw))

    def download_attachment(self, message_id: str, index: int = 0, *, to: Path | str) -> AttachmentRef:
        return self._run(self._async.download_attachment(message_id, index, to=to))

    def subscribe(
        self, after_cursor: int = 0, *, include_read: bool = False, wait_s: float | None = None
    ) -> Iterator[Delivery]:
        """Deliveries as a blocking iterator; stops after ``wait_s`` seconds without one (None: never)."""
        agen = self._async.subscribe(after_cursor, include_read=include_read)
        try:
            while True:
                try:
                    yield self._run(asyncio.wait_for(agen.__anext__(), timeout=wait_s))
                except (StopAsyncIteration, TimeoutError):
                    return
        finally:
            self._run(agen.aclose())

    def ack(self, message_id: str) -> None:
        self._run(self._async.ack(message_id))

    def status(self, message_id: str) -> MessageStatus:
        return self._run(self._async.status(message_id))

    def offices(self) -> OfficeList:
        return self._run(self._async.offices())

    def case(self, case_id: str) -> list[CaseEntry]:
        return self._run(self._async.case(case_id))
