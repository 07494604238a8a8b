"""The emulator's HTTP front: a raw ASGI callable served by uvicorn on 127.0.0.1.

There is no web framework on purpose: a signed Encrypt passes through one body read,
one parse, one HMAC, one SQLite ``PRAGMA data_version`` read (the store caches the
rest) and one AES-GCM call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import uvicorn

from byok.emulator import errors, spec
from byok.emulator.auth import (
    API_VERSION,
    DEFAULT_MAX_CLOCK_SKEW_SECONDS,
    DEFAULT_NONCE_CACHE_SIZE,
    DEFAULT_NONCE_RETENTION_SECONDS,
    RAM_API_VERSION,
    Authenticator,
    NonceCache,
    parse_request,
)
from byok.emulator.clock import EmulatedClock
from byok.emulator.crypto import MasterKey
from byok.emulator.errors import ApiError
from byok.emulator.faults import Fault, FaultInjector
from byok.emulator.handlers import CallContext, KmsHandlers
from byok.emulator.policy import Permissions
from byok.emulator.ram import RamHandlers
from byok.emulator.store import AccessKey, Store
from byok.emulator.store_ram import RamStore
from byok.errors import ConfigError
from byok.secrets import write_secret_file

logger = logging.getLogger(__name__)

ALLOWED_HOST = "127.0.0.1"
DEFAULT_REGION = "cn-hangzhou"
MASTER_KEY_FILE_NAME = "master.key"
ROOT_SECRET_FILE_NAME = "root-access-key-secret"
# NOTE: the shared KMS documents no body limit; 4 MiB is far above any KMS request
# (Encrypt takes at most 6 KB of data) and bounds memory per request.
MAX_BODY_BYTES = 4 * 1024 * 1024

_JSON_HEADERS = [(b"content-type", b"application/json;charset=utf-8")]

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class EmulatorApp:
    """The ASGI application: parse, authenticate, dispatch and reply in the KMS JSON envelope."""

    def __init__(
        self,
        handlers: KmsHandlers,
        authenticator: Authenticator,
        region: str,
        ram_handlers: RamHandlers,
        ram_store: RamStore,
        store: Store,
        clock: EmulatedClock,
        faults: FaultInjector | None = None,
    ) -> None:
        self._actions = {API_VERSION: handlers.actions, RAM_API_VERSION: ram_handlers.actions}
        self._ram_store = ram_store
        self._store = store
        self._clock = clock
        self._faults = faults
        self._authenticator = authenticator
        self._region = region
        self._host_id = f"kms.{region}.aliyuncs.com"
        self._date_cache: tuple[int, bytes] = (-1, b"")

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request_id = str(uuid.uuid4())
        action = "-"
        extra_headers: list[tuple[bytes, bytes]] = []
        try:
            body = await _read_body(receive)
            # Another process sharing the data directory may have committed a change.
            self._store.refresh()
            method = scope["method"]
            if method not in ("GET", "POST"):
                raise errors.unsupported_http_method()
            if scope["path"] != "/":
                raise errors.action_not_found()
            request = parse_request(method, scope["path"], scope["query_string"], scope["headers"], body)
            action = request.params.get("Action") or request.headers.get("x-acs-action") or "-"
            auth = self._authenticator.authenticate(request)
            action = auth.action
            fault = self._faults.pick(action) if self._faults is not None else None
            if fault is not None:
                await self._apply_fault(fault, action, request_id, send)
                # The injected latency may have let other requests or processes change state.
                self._store.refresh()
            if auth.version == API_VERSION:
                spec.validate(action, request.params)
            context = CallContext(
                auth.access_key.account_id,
                self._region,
                request_id,
                action,
                permissions=self._permissions(auth.access_key),
                service="kms" if auth.version == API_VERSION else "ram",
            )
            result = self._actions[auth.version][action](context, request.params)
            if not context.authorized:
                # A handler that skipped its RAM check is a bug, so the request fails instead of returning 200.
                logger.error("%s returned without a RAM authorization check [RequestId %s]", action, request_id)
                raise errors.internal_failure()
            result["RequestId"] = request_id
            status = 200
        except ApiError as error:
            status = error.http_status
            result = self._error_body(error, request_id)
            extra_headers = error.headers
            if error.log_message:
                logger.info("%s %s (HTTP %d): %s [RequestId %s]", action, error.code, status, error.message, request_id)
            else:
                logger.info("%s %s (HTTP %d) [RequestId %s]", action, error.code, status, request_id)
        except _DropConnection:
            raise
        except Exception:
            logger.exception("%s failed with an unexpected error [RequestId %s]", action, request_id)
            error = errors.internal_failure()
            status = error.http_status
            result = self._error_body(error, request_id)
        payload = json.dumps(result, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    *_JSON_HEADERS,
                    (b"content-length", str(len(payload)).encode("ascii")),
                    (b"date", self._date_header()),
                    (b"x-acs-request-id", request_id.encode("ascii")),
                    *extra_headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    def _date_header(self) -> bytes:
        """Return the emulated time as an RFC 7231 IMF-fixdate, formatted once per second.

        It follows ``byok emulator clock --advance``, so a client that reads the server's
        time from Date judges import token lifetimes by the emulated clock.
        """
        second = int(self._clock.now())
        cached_second, value = self._date_cache
        if second != cached_second:
            value = format_datetime(datetime.fromtimestamp(second, UTC), usegmt=True).encode("ascii")
            self._date_cache = (second, value)
        return value

    async def _apply_fault(self, fault: Fault, action: str, request_id: str, send: Send) -> None:
        """Wait, drop the connection or raise the fault's error, as ``byok emulator faults`` set it."""
        if fault.latency_ms:
            await asyncio.sleep(fault.latency_ms / 1000)
        if fault.drop_connection:
            logger.info("%s: dropping the connection (injected fault) [RequestId %s]", action, request_id)
            # Announce a body that never comes; uvicorn then closes the connection, and
            # the client sees the response cut short.
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1048576")]}
            )
            raise _DropConnection
        if fault.code is not None:
            raise fault.error()

    def _permissions(self, access_key: AccessKey) -> Permissions | None:
        """Return the RAM user's permissions, or None for the root AccessKey, which may do everything."""
        if access_key.user_name is None:
            return None
        return self._ram_store.permissions(access_key.account_id, access_key.user_name)

    def _error_body(self, error: ApiError, request_id: str) -> dict[str, Any]:
        # Shape of the Alibaba Cloud API gateway error body.
        # NOTE: whether KMS fills Recommend exactly like the gateway is inferred.
        return {
            "RequestId": request_id,
            "HostId": self._host_id,
            "Code": error.code,
            "Message": error.message,
            "Recommend": f"https://api.aliyun.com/troubleshoot?q={error.code}&product=Kms&requestId={request_id}",
        }


class _DropConnection(Exception):
    """Raised after a partial response so that uvicorn closes the connection."""


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise errors.request_too_large(MAX_BODY_BYTES)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


@dataclass
class ServeOptions:
    """Settings of one ``serve`` run; ``port`` 0 picks a free port."""

    data_dir: Path
    host: str = ALLOWED_HOST
    port: int = 0
    ready_file: Path | None = None
    access_key_secret_file: Path | None = None
    region: str = DEFAULT_REGION
    max_clock_skew_seconds: float = DEFAULT_MAX_CLOCK_SKEW_SECONDS
    nonce_retention_seconds: float = DEFAULT_NONCE_RETENTION_SECONDS
    nonce_cache_size: int = DEFAULT_NONCE_CACHE_SIZE

    def secret_file(self) -> Path:
        return self.access_key_secret_file or self.data_dir / ROOT_SECRET_FILE_NAME


@dataclass
class Emulator:
    """An opened emulator: the ASGI app, its store and the root AccessKey."""

    app: EmulatorApp
    store: Store
    root_access_key: AccessKey


def check_host(host: str) -> None:
    if host != ALLOWED_HOST:
        raise ConfigError(
            f"--host {host!r} is not allowed: the emulator binds {ALLOWED_HOST} only",
            fix=f"omit --host or pass --host {ALLOWED_HOST}",
        )


def open_emulator(options: ServeOptions) -> Emulator:
    """Open the data directory, create the root account on first start and build the app."""
    check_host(options.host)
    data_dir = Path(options.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    master_key = MasterKey.load_or_create(data_dir / MASTER_KEY_FILE_NAME)
    store = Store(data_dir, master_key)
    root = store.ensure_root_account()
    _write_root_secret(options.secret_file(), root)
    clock = EmulatedClock(data_dir)
    handlers = KmsHandlers(store, clock, options.region)
    ram_store = RamStore(store)
    ram_handlers = RamHandlers(ram_store, clock)
    authenticator = Authenticator(
        store,
        {API_VERSION: handlers.actions, RAM_API_VERSION: ram_handlers.actions},
        max_clock_skew_seconds=options.max_clock_skew_seconds,
        nonce_cache=NonceCache(options.nonce_retention_seconds, options.nonce_cache_size),
    )
    app = EmulatorApp(
        handlers, authenticator, options.region, ram_handlers, ram_store, store, clock, FaultInjector(data_dir)
    )
    return Emulator(app, store, root)


def _write_root_secret(path: Path, root: AccessKey) -> None:
    """Write the root AccessKey secret to ``path`` (0600) unless it already contains it."""
    value = root.secret.reveal()
    try:
        if path.read_text(encoding="utf-8").strip() == value:
            return
    except FileNotFoundError:
        pass
    write_secret_file(path, value)
    logger.info("wrote the root AccessKey secret of %s to %s", root.access_key_id, path)


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind and listen on (host, port) before uvicorn starts, so port 0 resolves to a known port."""
    check_host(host)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise ConfigError(
            f"cannot bind {host}:{port}: {error.strerror}",
            fix="pass --port 0 to pick a free port, or stop the process that uses this one",
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def refuse_live_ready_file(path: Path) -> None:
    """Raise ConfigError when ``path`` describes another emulator process that is still running.

    Replacing that file would hide the running server from 'byok kms' and from runbooks.
    """
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
        pid = int(content["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    if pid == os.getpid():
        return
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    except PermissionError:
        pass
    raise ConfigError(
        f"an emulator (PID {pid}) already serves with ready file {path} at {content.get('endpoint')}",
        fix=f"use that emulator, stop PID {pid} first, or pass another --ready-file",
    )


def remove_own_ready_file(path: Path) -> None:
    """Remove the ready file only if it still describes this process.

    Another server started later on the same path has replaced it, and its file must stay.
    """
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if content.get("pid") == os.getpid():
        path.unlink(missing_ok=True)


def write_ready_file(path: Path, content: dict[str, Any]) -> None:
    """Write the ready file atomically: a temporary file in the same directory, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


class _ReadyServer(uvicorn.Server):
    """uvicorn server that reports when it accepts connections and when it has shut down.

    The shutdown hook runs inside ``serve`` because uvicorn (0.29 and later) re-raises a
    captured SIGTERM or SIGINT once ``serve`` returns, which ends the process before any
    code after it would run.
    """

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None], on_stopped: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started
        self._on_stopped = on_stopped

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self._on_started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().shutdown(sockets)
        finally:
            self._on_stopped()


def serve(options: ServeOptions) -> None:
    """Run the emulator until SIGINT or SIGTERM; remove the ready file on the way out."""
    if options.ready_file is not None:
        refuse_live_ready_file(Path(options.ready_file))
    emulator = open_emulator(options)
    sock = bind_socket(options.host, options.port)
    port = sock.getsockname()[1]
    endpoint = f"http://{options.host}:{port}"
    ready = {
        "endpoint": endpoint,
        "host": options.host,
        "port": port,
        "region": options.region,
        "account_id": emulator.root_access_key.account_id,
        "access_key_id": emulator.root_access_key.access_key_id,
        "access_key_secret_file": str(options.secret_file().resolve()),
        "pid": os.getpid(),
        "data_dir": str(Path(options.data_dir).resolve()),
    }

    def on_started() -> None:
        if options.ready_file is not None:
            write_ready_file(options.ready_file, ready)
        logger.info(
            "KMS emulator listening on %s (region %s, account %s, AccessKey id %s, data %s)",
            endpoint, options.region, ready["account_id"], ready["access_key_id"], ready["data_dir"],
        )

    stopped = False

    def on_stopped() -> None:
        nonlocal stopped
        if stopped:
            return
        stopped = True
        if options.ready_file is not None:
            remove_own_ready_file(Path(options.ready_file))
        emulator.store.close()
        logger.info("KMS emulator on %s stopped", endpoint)

    config = uvicorn.Config(
        emulator.app,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        # The app sends Date from the emulated clock instead.
        date_header=False,
        # No proxy sits in front of the emulator, and the middleware costs a call per request.
        proxy_headers=False,
        ws="none",
    )
    server = _ReadyServer(config, on_started, on_stopped)
    try:
        server.run(sockets=[sock])
    finally:
        on_stopped()
        sock.close()
