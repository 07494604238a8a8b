"""The ``emulator`` click group: ``serve``, ``clock`` and ``faults``.

Mounted by the top-level CLI as ``byok emulator …`` and runnable as
``python -m byok.emulator …``.
"""

from __future__ import annotations

import difflib
import logging
import re
import sys
import time
from pathlib import Path

import click

from byok.emulator.auth import (
    DEFAULT_MAX_CLOCK_SKEW_SECONDS,
    DEFAULT_NONCE_CACHE_SIZE,
    DEFAULT_NONCE_RETENTION_SECONDS,
)
from byok.emulator.server import ALLOWED_HOST, DEFAULT_REGION, ServeOptions
from byok.errors import ByokError, ConfigError
from byok.secrets import state_dir

logger = logging.getLogger(__name__)

# Exit status for usage and configuration errors, as for every byok command.
EXIT_USAGE = 2
_REGION_PATTERN = re.compile(r"^[a-z]{2,}(-[a-z0-9]+)+$")


def default_data_dir() -> Path:
    return state_dir() / "emulator"


def _fail(error: ByokError) -> None:
    click.echo(f"Error: {error.diagnostics()}", err=True)
    sys.exit(EXIT_USAGE)


@click.group("emulator")
def emulator() -> None:
    """Run the local Alibaba Cloud KMS emulator and control its clock."""


@emulator.command("serve")
@click.option("--host", default=ALLOWED_HOST, show_default=True, help=f"Address to bind; only {ALLOWED_HOST} is accepted.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="TCP port; 0 picks a free port.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory of the database, master key and clock file [default: <state dir>/emulator].",
)
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON file written once the server accepts requests (endpoint, region, account_id, "
    "access_key_id, access_key_secret_file, pid, data_dir) and removed on exit [default: <data dir>/ready.json].",
)
@click.option(
    "--access-key-secret-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File (mode 0600) that receives the root AccessKey secret [default: <state dir>/secrets/"
    "emulator-root-access-key-secret with the default --data-dir, else <data dir>/root-access-key-secret].",
)
@click.option("--region", default=DEFAULT_REGION, show_default=True, help="Region id the emulator serves, used in ARNs.")
@click.option(
    "--max-clock-skew",
    type=click.IntRange(1),
    default=DEFAULT_MAX_CLOCK_SKEW_SECONDS,
    show_default=True,
    help="Largest accepted difference, in seconds, between a request timestamp and real time.",
)
@click.option(
    "--nonce-retention",
    type=click.IntRange(0),
    default=DEFAULT_NONCE_RETENTION_SECONDS,
    show_default=True,
    help="Seconds a signature nonce is remembered for replay detection; 0 turns replay detection off.",
)
@click.option(
    "--nonce-cache-size",
    type=click.IntRange(1),
    default=DEFAULT_NONCE_CACHE_SIZE,
    show_default=True,
    help="Maximum number of remembered nonces; beyond it the oldest are dropped early.",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Level of the log written to standard error.",
)
def serve(
    host: str,
    port: int,
    data_dir: Path | None,
    ready_file: Path | None,
    access_key_secret_file: Path | None,
    region: str,
    max_clock_skew: int,
    nonce_retention: int,
    nonce_cache_size: int,
    log_level: str,
) -> None:
    """Serve the KMS 2016-01-20 API on 127.0.0.1 until interrupted."""
    from byok.emulator.server import serve as run_server

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        if not _REGION_PATTERN.match(region):
            raise ConfigError(f"invalid --region {region!r}", fix="pass a region id such as cn-hangzhou or ap-southeast-1")
        chosen_data_dir = data_dir or default_data_dir()
        if access_key_secret_file is None and data_dir is None:
            # The default data folder sits in the state directory, whose secrets/ folder
            # already contains the root AccessKey secret that byok certify uses.
            access_key_secret_file = chosen_data_dir.parent / "secrets" / "emulator-root-access-key-secret"
        options = ServeOptions(
            data_dir=chosen_data_dir,
            host=host,
            port=port,
            ready_file=ready_file or chosen_data_dir / "ready.json",
            access_key_secret_file=access_key_secret_file,
            region=region,
            max_clock_skew_seconds=max_clock_skew,
            nonce_retention_seconds=nonce_retention,
            nonce_cache_size=nonce_cache_size,
        )
        run_server(options)
    except ByokError as error:
        _fail(error)


def known_actions() -> frozenset[str]:
    """Return the KMS and RAM action names the emulator serves."""
    from byok.emulator.ram import RAM_ACTION_NAMES
    from byok.emulator.spec import load_spec

    return frozenset(load_spec()) | RAM_ACTION_NAMES


@emulator.command("clock")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Data directory of the emulator whose clock to move.",
)
@click.option(
    "--advance",
    "duration",
    metavar="DURATION",
    default=None,
    help="Move the clock forward by DURATION: a whole number followed by s, m, h or d (3600s, 90m, 25h, 7d).",
)
@click.option(
    "--reset",
    is_flag=True,
    help="Set the clock back to this machine's time; expiries and deletions that already happened stay.",
)
def clock(data_dir: Path, duration: str | None, reset: bool) -> None:
    """Show, advance or reset the emulated clock that governs token and key material expiry."""
    from byok.emulator import clock as emulated_clock

    try:
        if reset and duration is not None:
            raise ConfigError("--reset and --advance cannot be combined", fix="pass one of them")
        if reset:
            offset = emulated_clock.reset(data_dir)
        elif duration is not None:
            offset = emulated_clock.advance(data_dir, emulated_clock.parse_duration(duration))
        else:
            offset = emulated_clock.read_offset(data_dir)
    except ByokError as error:
        _fail(error)
        return
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset))
    click.echo(f"emulated clock offset: {offset:.0f} s; emulated time now: {now}")


@emulator.command("faults")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Data directory of the emulator to inject faults into; a running server picks the change up at its next request.",
)
@click.option("--action", default="*", show_default=True, help="KMS or RAM action name the fault applies to; * means every action.")
@click.option(
    "--code",
    type=click.Choice(["Throttling", "Rejected.Throttling", "InternalFailure", "ServiceUnavailableTemporary"]),
    default=None,
    help="Error to return: Throttling (HTTP 400), Rejected.Throttling (429), InternalFailure (500), ServiceUnavailableTemporary (503).",
)
@click.option("--rate", type=click.FloatRange(0.0, 1.0), default=1.0, show_default=True, help="Fraction of requests (0 to 1) affected.")
@click.option("--latency-ms", type=click.IntRange(0), default=0, show_default=True, help="Delay, in milliseconds, added to affected requests.")
@click.option("--drop-connection", is_flag=True, help="Close the connection in the middle of the response instead of answering.")
@click.option("--retry-after", type=click.IntRange(1), default=None, help="Seconds to send in the x-acs-retry-after header with the error.")
@click.option("--clear", is_flag=True, help="Remove the fault of --action, or every fault when --action is *.")
def faults(
    data_dir: Path,
    action: str,
    code: str | None,
    rate: float,
    latency_ms: int,
    drop_connection: bool,
    retry_after: int | None,
    clear: bool,
) -> None:
    """Inject, list or clear faults of a running emulator without restarting it."""
    from byok.emulator import faults as fault_settings

    try:
        known = known_actions()
        if action != fault_settings.ALL_ACTIONS and action not in known:
            close = difflib.get_close_matches(action, sorted(known), n=3)
            raise ConfigError(
                f"--action {action!r} is not an action the emulator serves",
                fix=(f"did you mean {', '.join(close)}? " if close else "")
                + "use a KMS or RAM action name such as Encrypt, or * for every action",
            )
        current = fault_settings.read_faults(data_dir)
        if clear:
            if action == fault_settings.ALL_ACTIONS:
                current = {}
            else:
                current.pop(action, None)
            fault_settings.write_faults(data_dir, current)
        elif code is not None or drop_connection or latency_ms:
            current[action] = fault_settings.Fault(
                code=code, rate=rate, latency_ms=latency_ms, drop_connection=drop_connection, retry_after=retry_after
            )
            fault_settings.write_faults(data_dir, current)
    except ByokError as error:
        _fail(error)
        return
    if not current:
        click.echo("no faults injected")
    for name, fault in sorted(current.items()):
        click.echo(
            f"{name}: code={fault.code or '-'} rate={fault.rate} latency_ms={fault.latency_ms} "
            f"drop_connection={fault.drop_connection} retry_after={fault.retry_after or '-'}"
        )
