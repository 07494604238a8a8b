"""``byok import``, ``byok reimport``, ``byok verify-cmk`` and ``byok report verify|cosign``.

Mounted on the top-level group by ``byok.cli``. Exit statuses: 0 passed (for ``report
verify``: intact), 1 failed, 2 usage or configuration error, and nothing was executed.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

import click

from byok.errors import ByokError, ConfigError

logger = logging.getLogger(__name__)



class RunningEmulator:
    """An emulator the operator started with ``byok emulator serve``: the run uses it and leaves it running."""

    def __init__(self, ready: dict[str, Any], ready_file: Path) -> None:
        self.ready = ready
        self.ready_file = ready_file

    def stop(self) -> None:
        """Do nothing: the operator who started this emulator also stops it."""


def running_emulator(ready_file: Path) -> dict[str, Any] | None:
    """Return the content of ``ready_file`` if its server is alive, else None.

    Alive means the ``pid`` it names exists and its port accepts a TCP connection on
    127.0.0.1. A ready file left behind by a killed server fails one of the two checks.
    """
    try:
        ready = json.loads(ready_file.read_text(encoding="utf-8"))
        pid = int(ready["pid"])
        port = int(ready["port"])
        host = ready["host"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.info("Ignoring unreadable emulator ready file %s: %s", ready_file, error)
        return None
    if host != "127.0.0.1":
        logger.info("Ignoring emulator ready file %s: host %r is not 127.0.0.1", ready_file, host)
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        logger.info("Ignoring emulator ready file %s: PID %d is not running", ready_file, pid)
        return None
    except PermissionError:
        pass  # The process exists but belongs to another user.
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    except OSError as error:
        logger.info("Ignoring emulator ready file %s: connecting to 127.0.0.1:%d failed: %s", ready_file, port, error)
        return None
    return ready


def start_emulator(profile, state: Path):
    """Return the KMS emulator of an emulator profile: the one already serving ``<state>/emulator``, or a new one.

    Two servers on one data directory would share one SQLite database, and the second one's
    exit would remove the first one's ready file, so a live emulator is reused and left
    running. Otherwise an emulator is started that the run stops. It lives in the CLI, a
    front end, because client-side modules never import the emulator.
    """
    from byok.emulator.process import READY_FILE_NAME, EmulatorProcess

    data_dir = state / "emulator"
    ready_file = data_dir / READY_FILE_NAME
    ready = running_emulator(ready_file)
    if ready is not None:
        if ready.get("region") != profile.kms.region:
            raise ConfigError(
                f"the KMS emulator running for {data_dir} (PID {ready['pid']}) serves region "
                f"{ready.get('region')!r}, but profile {profile.name} uses {profile.kms.region!r}",
                fix=f"stop PID {ready['pid']} and start it with --region {profile.kms.region}, or use a profile for its region",
            )
        logger.info("Using the KMS emulator PID %s at %s that already serves %s", ready["pid"], ready["endpoint"], data_dir)
        return RunningEmulator(ready, ready_file)
    process = EmulatorProcess(
        data_dir=data_dir,
        secret_file=state / "secrets" / "emulator-root-access-key-secret",
        region=profile.kms.region,
        ready_file=ready_file,
    )
    return process.start()


def _configure_logging(verbose: int) -> None:
    from byok.cli import _configure_logging as configure

    configure(verbose)
    # pyHanko logs every failed path validation with a traceback; byok reports the reason itself.
    logging.getLogger("pyhanko").setLevel(logging.CRITICAL)
    logging.getLogger("pyhanko_certvalidator").setLevel(logging.CRITICAL)


def _runbook_command(kind: str, summary: str):
    @click.command(kind, help=summary)
    @click.option(
        "--profile",
        "profile_ref",
        envvar="BYOK_PROFILE",
        default=None,
        help="Profile name from profiles/ or path of a TOML file [env BYOK_PROFILE; default softhsm-emulator].",
    )
    @click.option("--output", type=click.Path(file_okay=False, path_type=Path), default=None, help="Bundle folder [default: reports/<run-id>/].")
    @click.option(
        "-p",
        "--parameter",
        "parameters",
        type=(str, str),
        multiple=True,
        metavar="NAME VALUE",
        help="Runbook parameter, repeatable; NAME must be declared in the notebook's parameters cell. Never a secret.",
    )
    @click.option("--run-id", default=None, help="Run identifier used in labels and the bundle folder [default: generated].")
    @click.option(
        "--execution-timeout",
        type=click.IntRange(min=1),
        default=600,
        show_default=True,
        help="Whole seconds one cell may run before the run fails.",
    )
    @click.option("--notebook", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Run this notebook instead of the shipped runbook.")
    @click.option("--force", is_flag=True, help="Replace the contents of an output folder that is not empty.")
    @click.option("-v", "--verbose", count=True, help="More output: -v for progress, -vv for debug and tracebacks.")
    def command(profile_ref, output, parameters, run_id, execution_timeout, notebook, force, verbose) -> None:
        from byok.profile import DEFAULT_PROFILE, load_profile
        from byok.runbook.run import EXIT_USAGE, run_runbook

        _configure_logging(verbose)
        raw: dict[str, str] = {}
        for name, value in parameters:
            if name in raw:
                click.echo(f"error: parameter {name!r} is given twice\nFix: pass each -p NAME once", err=True)
                sys.exit(EXIT_USAGE)
            raw[name] = value
        reference = profile_ref or DEFAULT_PROFILE
        try:
            profile = load_profile(reference)
            result = run_runbook(
                kind,
                profile,
                profile_reference=reference,
                raw_parameters=raw,
                output_dir=output,
                notebook=notebook,
                run_id=run_id,
                execution_timeout=execution_timeout,
                force=force,
                start_emulator=start_emulator,
            )
        except ConfigError as error:
            click.echo(f"error: {error.diagnostics()}", err=True)
            sys.exit(EXIT_USAGE)
        except ByokError as error:
            click.echo(f"error: {error.diagnostics()}", err=True)
            sys.exit(1)
        for warning in result.warnings:
            click.echo(f"warning: {warning}", err=True)
        if result.exit_status == 0:
            click.echo(f"{kind}: passed, bundle {result.output_dir} signed by {result.seal.signer_subject}")
            if result.result and result.result.get("key_id"):
                click.echo(f"KeyId: {result.result['key_id']}")
        else:
            click.echo(f"{kind}: FAILED, bundle {result.output_dir} left unsigned", err=True)
            for problem in result.problems:
                click.echo(f"  - {problem}", err=True)
        sys.exit(result.exit_status)

    return command


import_command = _runbook_command(
    "import", "Run runbooks/import_key_material.ipynb through papermill, then write and sign the bundle."
)
reimport_command = _runbook_command(
    "reimport",
    "Run runbooks/reimport_key_material.ipynb: import the HSM's AES key again into its CMK "
    "(pass -p previous_bundle DIR), then write and sign the bundle.",
)
verify_cmk_command = _runbook_command(
    "verify-cmk", "Run runbooks/verify_cmk.ipynb (pass -p existing_key_id KEY_ID), then write and sign the bundle."
)


@click.group("report")
def report() -> None:
    """Verify or co-sign a signed bundle."""


@report.command("verify")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--trust",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    multiple=True,
    help="PEM certificate to trust besides the bundle's report-signer.pem (a witness's), repeatable.",
)
@click.option("-v", "--verbose", count=True, help="More output: -v for progress, -vv for debug.")
def report_verify(folder, trust, verbose) -> None:
    """Check every signature of FOLDER/SHA256SUMS.p7s and every hash of FOLDER/SHA256SUMS."""
    from byok.evidence.verify import verify_bundle

    _configure_logging(verbose)
    result = verify_bundle(folder, list(trust))
    for signer in result.signers:
        state = "ok" if signer.passed else f"FAILED: {signer.problem}"
        click.echo(f"signer: {signer.subject} (serial {signer.serial_number}, signed {signer.signing_time}): {state}")
    if result.intact:
        click.echo(f"intact: {result.files_checked} files match SHA256SUMS, {len(result.signers)} signature(s) verified")
        sys.exit(0)
    click.echo(f"NOT verified: {folder}: {result.verdict()}", err=True)
    # The signer lines above already give each signer's problem.
    for problem in result.manifest.problems() if result.manifest else []:
        click.echo(f"  - {problem}", err=True)
    if result.untrusted_signers():
        click.echo(
            "Fix: if you expect these signers, get each one's certificate from that signer, not from the bundle, "
            "and pass it with --trust WITNESS.pem (repeatable)",
            err=True,
        )
    if result.manifest is not None and not result.manifest.intact:
        click.echo("Fix: the bundle changed after it was signed; get an unchanged copy from where it was archived", err=True)
    sys.exit(1)


@report.command("cosign")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--key", "key_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Witness private key, PEM (RSA or EC).")
@click.option("--cert", "cert_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Witness certificate, PEM.")
@click.option(
    "--passphrase-env",
    default=None,
    metavar="VARIABLE",
    help="Environment variable that contains the passphrase of an encrypted key.",
)
@click.option("-v", "--verbose", count=True, help="More output: -v for progress, -vv for debug.")
def report_cosign(folder, key_file, cert_file, passphrase_env, verbose) -> None:
    """Add a witness signature to FOLDER/SHA256SUMS.p7s after checking the bundle is unchanged."""
    from byok.evidence.bundle import cosign_bundle
    from byok.secrets import Secret

    _configure_logging(verbose)
    passphrase = None
    if passphrase_env:
        value = os.environ.get(passphrase_env)
        if not value:
            click.echo(f"error: environment variable {passphrase_env} is not set\nFix: export {passphrase_env}=...", err=True)
            sys.exit(2)
        passphrase = Secret(value, f"passphrase of {key_file.name}").reveal().encode("utf-8")
    try:
        subject = cosign_bundle(folder, cert_file, key_file, passphrase)
    except ConfigError as error:
        click.echo(f"error: {error.diagnostics()}", err=True)
        sys.exit(2)
    except ByokError as error:
        click.echo(f"error: {error.diagnostics()}", err=True)
        sys.exit(1)
    click.echo(f"co-signed {folder} as {subject}")


COMMANDS = (import_command, reimport_command, verify_cmk_command, report)
