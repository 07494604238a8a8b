"""Throughput of signed Encrypt and Decrypt against the byok KMS emulator, with moto's AWS KMS beside it.

Usage: ``.venv/bin/python bench/emulator_throughput.py [--duration 10] [--workers 2]``
(``make bench`` installs moto and runs this). Each worker is a separate process with one
keep-alive HTTP connection. Emulator requests are signed with RPC signature v1 and a
fresh SignatureNonce each. moto requests are AWS KMS Encrypt calls signed with botocore's
SigV4 and dummy credentials. Results are printed and written to
``bench/results/emulator-throughput-<time>.json``. The numbers depend on the machine;
the JSON records which one.
"""

from __future__ import annotations

import argparse
import base64
import http.client
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


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _summarise(name: str, results: list[dict[str, Any]], duration: float) -> dict[str, Any]:
    latencies = [latency for result in results for latency in result["latencies_ms"]]
    errors = sum(result["errors"] for result in results)
    return {
        "target": name,
        "requests": len(latencies),
        "errors": errors,
        "duration_s": duration,
        "requests_per_second": round(len(latencies) / duration, 1),
        "p50_ms": round(statistics.median(latencies), 3) if latencies else None,
        "p99_ms": round(_percentile(latencies, 0.99), 3) if latencies else None,
    }


# -- emulator worker -----------------------------------------------------------------------


def _emulator_worker(port: int, access_key_id: str, secret: str, key_id: str, blob: str, duration: float, output: Any) -> None:
    from byok.emulator.auth import v1_signature, v1_string_to_sign

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration
    encrypt = True
    while time.perf_counter() < deadline:
        business = {"KeyId": key_id, "Plaintext": PLAINTEXT} if encrypt else {"CiphertextBlob": blob}
        params = {
            "Action": "Encrypt" if encrypt else "Decrypt",
            "Version": "2016-01-20",
            "Format": "JSON",
            "AccessKeyId": access_key_id,
            "SignatureMethod": "HMAC-SHA1",
            "SignatureVersion": "1.0",
            "SignatureNonce": uuid.uuid4().hex,
            "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **business,
        }
        params["Signature"] = v1_signature(secret, v1_string_to_sign("POST", params))
        started = time.perf_counter()
        connection.request("POST", "/?" + urlencode(params, quote_via=quote, safe="~"), headers={"Content-Length": "0"})
        response = connection.getresponse()
        response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            errors += 1
        encrypt = not encrypt
    output.put({"latencies_ms": latencies, "errors": errors})


def bench_emulator(duration: float, workers: int) -> dict[str, Any]:
    from byok.emulator.process import EmulatorProcess
    from byok.kms import KmsClient

    with tempfile.TemporaryDirectory() as folder, EmulatorProcess(Path(folder) / "data", log_level="WARNING") as emulator:
        secret = emulator.access_key_secret()
        kms = KmsClient(endpoint=emulator.endpoint, region=emulator.region, access_key_id=emulator.access_key_id, access_key_secret=secret)
        key_id = kms.create_key(origin="Aliyun_KMS").metadata.key_id
        blob = kms.encrypt(key_id, PLAINTEXT).ciphertext_blob
        results = _run_workers(
            _emulator_worker, (emulator.port, emulator.access_key_id, secret.reveal(), key_id, blob, duration), workers
        )
    return _summarise("byok KMS emulator (Encrypt and Decrypt, RPC signature v1)", results, duration)


# -- moto worker ---------------------------------------------------------------------------


def _moto_worker(port: int, key_id: str, duration: float, output: Any) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    credentials = Credentials("testing", "testing")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps({"KeyId": key_id, "Plaintext": base64.b64encode(PLAINTEXT.encode()).decode()})
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration
    while time.perf_counter() < deadline:
        request = AWSRequest(
            method="POST",
            url=f"http://127.0.0.1:{port}/",
            data=body,
            headers={"X-Amz-Target": "TrentService.Encrypt", "Content-Type": "application/x-amz-json-1.1"},
        )
        SigV4Auth(credentials, "kms", "us-east-1").add_auth(request)
        started = time.perf_counter()
        connection.request("POST", "/", body=body, headers=dict(request.headers.items()))
        response = connection.getresponse()
        response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            errors += 1
    output.put({"latencies_ms": latencies, "errors": errors})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_moto(duration: float, workers: int) -> dict[str, Any] | None:
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
        results = _run_workers(_moto_worker, (port, key_id, duration), workers)
    finally:
        server.terminate()
        server.wait(timeout=15)
    import moto as moto_module

    return _summarise(f"moto {moto_module.__version__} server mode (AWS KMS Encrypt, SigV4)", results, duration)


def _run_workers(target: Any, arguments: tuple, workers: int) -> list[dict[str, Any]]:
    context = multiprocessing.get_context("spawn")
    output = context.Queue()
    processes = [context.Process(target=target, args=(*arguments, output)) for _ in range(workers)]
    for process in processes:
        process.start()
    results = [output.get() for _ in processes]
    for process in processes:
        process.join()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds each target is driven")
    parser.add_argument("--workers", type=int, default=2, help="client processes, each with one keep-alive connection")
    parser.add_argument("--skip-moto", action="store_true", help="measure the emulator only")
    arguments = parser.parse_args()

    emulator = bench_emulator(arguments.duration, arguments.workers)
    moto = None if arguments.skip_moto else bench_moto(arguments.duration, arguments.workers)
    record = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "system": platform.platform(),
        },
        "workers": arguments.workers,
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
