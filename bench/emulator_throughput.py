"""Throughput of signed Encrypt and Decrypt against the byok KMS emulator, with moto's AWS KMS beside it.

Usage: ``.venv/bin/python bench/emulator_throughput.py [--duration 10] [--clients 1]
[--connections 8]`` (``make bench`` installs moto and runs this).

Both targets get the same client. Before the timed window each client process signs a
bounded batch of requests and encodes them as raw HTTP/1.1 bytes. Emulator requests
use RPC signature v1 with a distinct SignatureNonce each. moto requests are AWS KMS
Encrypt calls signed with botocore's SigV4 and dummy credentials. In the window, every
connection is a keep-alive TCP connection on 127.0.0.1 with one request in flight
(no pipelining), driven by asyncio. Latency runs from writing a request to reading the
last byte of its response. Results are printed and written to
``bench/results/emulator-throughput-<time>.json``. The numbers depend on the machine,
and the JSON records which one.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PLAINTEXT = "benchmark payload of about sixty-four bytes for Encrypt calls.."
# Requests each connection may send in one window. A connection that runs out stops
# early and the result counts it under exhausted_connections; raise the count then.
DEFAULT_REQUESTS_PER_CONNECTION = 12_000
# moto is much slower and botocore's SigV4 signing costs about 0.2 ms a request, so its
# batch is smaller.
DEFAULT_MOTO_REQUESTS_PER_CONNECTION = 2_000
# The emulator accepts timestamps within 15 minutes of its real clock; a window stays
# well inside that.
MAX_DURATION_SECONDS = 300


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _summarise(name: str, results: list[dict[str, Any]], duration: float) -> dict[str, Any]:
    latencies = [latency for result in results for latency in result["latencies_ms"]]
    errors = sum(result["errors"] for result in results)
    statuses: dict[str, int] = {}
    for result in results:
        for status, count in result["error_statuses"].items():
            statuses[status] = statuses.get(status, 0) + count
    return {
        "target": name,
        "requests": len(latencies),
        "errors": errors,
        "error_statuses": statuses,
        "exhausted_connections": sum(result["exhausted_connections"] for result in results),
        "connects": sum(result["connects"] for result in results),
        "duration_s": duration,
        "requests_per_second": round(len(latencies) / duration, 1),
        "p50_ms": round(statistics.median(latencies), 3) if latencies else None,
        "p99_ms": round(_percentile(latencies, 0.99), 3) if latencies else None,
    }


# -- request batches, built in the client process before the window ----------------------


def _emulator_requests(port: int, access_key_id: str, secret: str, key_id: str, blob: str, count: int) -> list[bytes]:
    """Sign ``count`` requests, alternating Encrypt and Decrypt, each with its own nonce."""
    from byok.emulator.auth import v1_signature, v1_string_to_sign

    head = f" HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n".encode("ascii")
    timestamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    requests = []
    for index in range(count):
        business = {"KeyId": key_id, "Plaintext": PLAINTEXT} if index % 2 == 0 else {"CiphertextBlob": blob}
        params = {
            "Action": "Encrypt" if index % 2 == 0 else "Decrypt",
            "Version": "2016-01-20",
            "Format": "JSON",
            "AccessKeyId": access_key_id,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureVersion": "1.0",
            "SignatureNonce": uuid.uuid4().hex,
            "Timestamp": timestamp,
            **business,
        }
        params["Signature"] = v1_signature(secret, v1_string_to_sign("POST", params))
        requests.append(b"POST /?" + urlencode(params, quote_via=quote, safe="~").encode("ascii") + head)
    return requests


def _moto_requests(port: int, key_id: str, count: int) -> list[bytes]:
    """Sign ``count`` AWS KMS Encrypt requests with SigV4."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    credentials = Credentials("testing", "testing")
    body = json.dumps({"KeyId": key_id, "Plaintext": base64.b64encode(PLAINTEXT.encode()).decode()}).encode("ascii")
    signer = SigV4Auth(credentials, "kms", "us-east-1")
    requests = []
    for _ in range(count):
        request = AWSRequest(
            method="POST",
            url=f"http://127.0.0.1:{port}/",
            data=body,
            headers={"X-Amz-Target": "TrentService.Encrypt", "Content-Type": "application/x-amz-json-1.1"},
        )
        signer.add_auth(request)
        headers = {"Host": f"127.0.0.1:{port}", **dict(request.headers.items()), "Content-Length": str(len(body))}
        head = "POST / HTTP/1.1\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
        requests.append(head.encode("latin-1") + body)
    return requests


# -- the client: asyncio connections replaying a batch ------------------------------------


async def _drive_connection(port: int, requests: list[bytes], deadline: float, latencies: list[float], counters: dict[str, Any]) -> None:
    clock = time.perf_counter
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    try:
        for request in requests:
            if clock() >= deadline:
                return
            started = clock()
            if writer is None:
                # A server that replies with "Connection: close" (moto's Werkzeug server does)
                # costs a new connection per request, and its latency includes the connect.
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                counters["connects"] += 1
            assert reader is not None
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            lowered = head.lower()
            length_at = lowered.find(b"\r\ncontent-length:")
            if length_at < 0:
                raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
            length = int(head[length_at + 17 : head.index(b"\r\n", length_at + 2)])
            await reader.readexactly(length)
            latencies.append((clock() - started) * 1000)
            if status != 200:
                counters["errors"] += 1
                counters["error_statuses"][str(status)] = counters["error_statuses"].get(str(status), 0) + 1
            if b"\r\nconnection: close\r\n" in lowered:
                writer.close()
                reader = writer = None
        counters["exhausted_connections"] += 1
    finally:
        if writer is not None:
            writer.close()


async def _drive(port: int, batches: list[list[bytes]], duration: float) -> dict[str, Any]:
    latencies: list[float] = []
    counters: dict[str, Any] = {"errors": 0, "error_statuses": {}, "exhausted_connections": 0, "connects": 0}
    deadline = time.perf_counter() + duration
    await asyncio.gather(*(_drive_connection(port, batch, deadline, latencies, counters) for batch in batches))
    return {"latencies_ms": latencies, **counters}


def _client_process(kind: str, arguments: tuple, connections: int, per_connection: int, duration: float, barrier: Any, output: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    port = arguments[0]
    if kind == "emulator":
        requests = _emulator_requests(*arguments, count=connections * per_connection)
    else:
        requests = _moto_requests(*arguments, count=connections * per_connection)
    batches = [requests[index::connections] for index in range(connections)]
    # Every client process starts its window once all of them have signed their batch.
    barrier.wait()
    try:
        output.put(asyncio.run(_drive(port, batches, duration)))
    except Exception as error:  # noqa: BLE001  (any failure must reach the parent)
        # Reported to the parent, which would otherwise wait for this result forever.
        output.put({"error": f"client process failed: {error!r}"})


def _run_clients(kind: str, arguments: tuple, options: argparse.Namespace) -> list[dict[str, Any]]:
    context = multiprocessing.get_context("spawn")
    output = context.Queue()
    barrier = context.Barrier(options.clients)
    per_connection = options.requests_per_connection if kind == "emulator" else options.moto_requests_per_connection
    processes = [
        context.Process(
            target=_client_process,
            args=(kind, arguments, options.connections, per_connection, options.duration, barrier, output),
        )
        for _ in range(options.clients)
    ]
    for process in processes:
        process.start()
    results = [output.get() for _ in processes]
    for process in processes:
        process.join()
    failures = [result["error"] for result in results if "error" in result]
    if failures:
        raise RuntimeError("; ".join(failures))
    return results


# -- targets ------------------------------------------------------------------------------


def bench_emulator(options: argparse.Namespace) -> dict[str, Any]:
    from byok.emulator.process import EmulatorProcess
    from byok.kms import KmsClient

    with tempfile.TemporaryDirectory() as folder, EmulatorProcess(Path(folder) / "data", log_level="WARNING") as emulator:
        secret = emulator.access_key_secret()
        kms = KmsClient(endpoint=emulator.endpoint, region=emulator.region, access_key_id=emulator.access_key_id, access_key_secret=secret)
        key_id = kms.create_key(origin="Aliyun_KMS").metadata.key_id
        blob = kms.encrypt(key_id, PLAINTEXT).ciphertext_blob
        results = _run_clients("emulator", (emulator.port, emulator.access_key_id, secret.reveal(), key_id, blob), options)
    return _summarise("byok KMS emulator (Encrypt and Decrypt, RPC signature v1)", results, options.duration)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_moto(options: argparse.Namespace) -> dict[str, Any] | None:
    try:
        import boto3  # noqa: F401  (moto's server imports it)
        import moto  # noqa: F401
    except ImportError:
        print("moto is not installed; run 'make bench' to install the bench extra", file=sys.stderr)
        return None
    import botocore.session

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = botocore.session.get_session().create_client(
            "kms", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{port}",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )
        for _ in range(100):
            try:
                key_id = client.create_key()["KeyMetadata"]["KeyId"]
                break
            except Exception:  # the server is still starting
                time.sleep(0.1)
        else:
            raise RuntimeError(f"moto server on port {port} did not start")
        results = _run_clients("moto", (port, key_id), options)
    finally:
        server.terminate()
        server.wait(timeout=15)
    import moto as moto_module

    return _summarise(f"moto {moto_module.__version__} server mode (AWS KMS Encrypt, SigV4)", results, options.duration)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds each target is driven")
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections per client process")
    parser.add_argument(
        "--requests-per-connection", type=int, default=DEFAULT_REQUESTS_PER_CONNECTION,
        help="requests signed in advance for each connection; a connection stops when it has sent them all",
    )
    parser.add_argument(
        "--moto-requests-per-connection", type=int, default=DEFAULT_MOTO_REQUESTS_PER_CONNECTION,
        help="the same for moto",
    )
    parser.add_argument("--skip-moto", action="store_true", help="measure the emulator only")
    options = parser.parse_args()
    if not 0 < options.duration <= MAX_DURATION_SECONDS:
        parser.error(f"--duration must be between 0 and {MAX_DURATION_SECONDS} s, inside the 15-minute timestamp window")

    emulator = bench_emulator(options)
    moto = None if options.skip_moto else bench_moto(options)
    record = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": " ".join(sys.argv[1:]),
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
        "client": {
            "processes": options.clients,
            "connections_per_process": options.connections,
            "requests_signed_per_connection": options.requests_per_connection,
            "moto_requests_signed_per_connection": options.moto_requests_per_connection,
            "pipelining": False,
            "cpu_pinning": None,
        },
        "server_processes": 1,
        "emulator": emulator,
        "moto": moto,
        "emulator_to_moto_ratio": (
            round(emulator["requests_per_second"] / moto["requests_per_second"], 1) if moto and moto["requests_per_second"] else None
        ),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"emulator-throughput-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=2))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
