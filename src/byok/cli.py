"""The ``byok`` command.

Results go to standard output and logs to standard error. Secrets are never accepted as
options or arguments: they come from environment variables or 0600 files that the
profile names. Exit statuses follow the command contract: 0 success, 1 failure, 2 usage
or configuration error, 3 (certify only) blocked by the environment.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

import click

from byok import __version__
from byok.errors import ByokError, ConfigError
from byok.evidence.leaks import install_redaction
from byok.profile import Profile, load_profile

logger = logging.getLogger("byok")


def _configure_logging(verbose: int) -> None:
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    env_level = os.environ.get("BYOK_LOG_LEVEL")
    if env_level:
        level = getattr(logging, env_level.upper(), level)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    install_redaction(root)
    # byok reports every KMS error itself; the SDK's own error line would repeat it.
    logging.getLogger("aliyunsdkcore").setLevel(logging.INFO if verbose > 1 else logging.CRITICAL)


def _load_profile(reference: str | None) -> Profile:
    return load_profile(reference)


def _fail(error: ByokError, verbose: int, status: int = 1) -> None:
    click.echo(f"error: {error.diagnostics()}", err=True)
    if verbose > 1:
        logger.exception("details")
    sys.exit(2 if isinstance(error, ConfigError) else status)


profile_option = click.option(
    "--profile",
    "profile_ref",
    envvar="BYOK_PROFILE",
    default=None,
    help="Profile name from profiles/ or path of a TOML file [env BYOK_PROFILE; default softhsm-emulator].",
)
verbose_option = click.option("-v", "--verbose", count=True, help="More output: -v for progress, -vv for debug and tracebacks.")


@click.group()
@click.version_option(__version__, prog_name="byok")
def main() -> None:
    """Certify, perform and document the import of HSM-generated AES-256 keys into Alibaba Cloud KMS."""


# -- certify ------------------------------------------------------------------------------


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@profile_option
@click.option("--output", type=click.Path(path_type=Path), default=None, help="Report folder [default: reports/<run-id>/].")
@click.option("--run-id", default=None, help="Run identifier used in labels and the report folder [default: generated].")
@click.option(
    "--wrapping-algorithm",
    default=None,
    help="WrappingAlgorithm instead of the profile's: RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256 or RSAES_PKCS1_V1_5.",
)
@click.option("--force", is_flag=True, help="Replace an earlier certify run's files in the output folder.")
@verbose_option
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def certify(profile_ref, output, run_id, wrapping_algorithm, force, verbose, pytest_args) -> None:
    """Run the Gherkin compliance suite and write the report folder.

    Extra arguments after the options are passed to pytest (for example -k NAME).
    """
    from byok.certify import format_summary, run_certify

    _configure_logging(verbose)
    try:
        profile = _load_profile(profile_ref)
        if wrapping_algorithm:
            profile = profile.with_wrapping_algorithm(wrapping_algorithm)
        result = run_certify(
            profile, output_dir=output, run_id=run_id, pytest_args=list(pytest_args), force=force, verbose=verbose > 0
        )
    except KeyboardInterrupt:
        click.echo("interrupted: the test run was stopped; its report folder is incomplete and unsigned", err=True)
        sys.exit(130)
    except ByokError as error:
        _fail(error, verbose)
        return
    if verbose:
        click.echo(result.console)
    click.echo(format_summary(result, profile))
    sys.exit(result.exit_status)


# -- SoftHSM2 token ----------------------------------------------------------------------------


@main.group()
def softhsm() -> None:
    """The SoftHSM2 token byok manages under the state directory."""


@softhsm.command("init")
@profile_option
@verbose_option
def softhsm_init(profile_ref, verbose) -> None:
    """Create the profile's SoftHSM2 token with generated PINs (kept in the state directory's secrets/)."""
    from byok.hsm.softhsm import init_token
    from byok.secrets import state_dir

    _configure_logging(verbose)
    try:
        profile = _load_profile(profile_ref)
        if profile.hsm.family != "softhsm" or not profile.hsm.managed:
            raise ConfigError(
                f"profile {profile.name} does not use a byok-managed SoftHSM2 token",
                fix="use a softhsm profile such as softhsm-emulator",
            )
        result = init_token(profile.hsm, state_dir())
    except ByokError as error:
        _fail(error, verbose)
        return
    click.echo(json.dumps(_public_fields(result), indent=2, default=str))


@main.group()
def opencryptoki() -> None:
    """The opencryptoki soft token byok manages (machine-wide; needs root)."""


@opencryptoki.command("init")
@profile_option
@verbose_option
def opencryptoki_init(profile_ref, verbose) -> None:
    """Start pkcsslotd, initialize the profile's soft token with generated PINs (state directory's secrets/), stop pkcsslotd."""
    from byok.hsm.opencryptoki import is_managed_opencryptoki, prepare_token
    from byok.secrets import state_dir

    _configure_logging(verbose)
    try:
        profile = _load_profile(profile_ref or "opencryptoki-emulator")
        if not is_managed_opencryptoki(profile.hsm):
            raise ConfigError(
                f"profile {profile.name} does not use a byok-managed opencryptoki token",
                fix="use the opencryptoki-emulator profile",
            )
        daemon, result = prepare_token(profile.hsm, state_dir())
        daemon.stop()
    except ByokError as error:
        _fail(error, verbose)
        return
    click.echo(json.dumps(_public_fields(result), indent=2, default=str))


def _public_fields(result) -> dict:
    if dataclasses.is_dataclass(result):
        return dataclasses.asdict(result)
    return dict(result) if isinstance(result, dict) else {"result": str(result)}


# -- emulator ---------------------------------------------------------------------------------


def _mount_emulator() -> None:
    from byok.emulator.cli import emulator

    main.add_command(emulator)


_mount_emulator()


# -- runbooks and signed bundles --------------------------------------------------------------


def _mount_runbooks() -> None:
    from byok.runbook.cli import COMMANDS

    for command in COMMANDS:
        main.add_command(command)


_mount_runbooks()


# -- KMS operator commands -------------------------------------------------------------------


@main.group()
def kms() -> None:
    """KMS calls for operators: ListKeys, DescribeKey, Encrypt, Decrypt."""


def _kms_client(profile: Profile):
    from byok.kms import KmsClient
    from byok.secrets import load_secret, state_dir

    if profile.kms.uses_emulator:
        ready = state_dir() / "emulator" / "ready.json"
        if not ready.is_file():
            raise ConfigError(
                f"the emulator of profile {profile.name} is not running (no {ready})",
                fix=f"start it with 'byok emulator serve --data-dir {state_dir() / 'emulator'} --ready-file {ready}'",
            )
        info = json.loads(ready.read_text(encoding="utf-8"))
        secret = load_secret("emulator root AccessKey secret", env=None, file=Path(info["access_key_secret_file"]))
        return KmsClient(
            endpoint=info["endpoint"], region=info["region"], access_key_id=info["access_key_id"], access_key_secret=secret
        )
    key_id = os.environ.get(profile.kms.access_key_id_env or "", "")
    if not key_id:
        raise ConfigError(
            f"environment variable {profile.kms.access_key_id_env} (AccessKey id) is not set",
            fix=f"export {profile.kms.access_key_id_env}=...",
        )
    secret = load_secret("AccessKey secret", env=profile.kms.access_key_secret_env, file=None)
    return KmsClient(endpoint=profile.kms.endpoint, region=profile.kms.region, access_key_id=key_id, access_key_secret=secret)


def _run_kms(profile_ref, verbose, operation) -> None:
    _configure_logging(verbose)
    try:
        client = _kms_client(_load_profile(profile_ref))
        click.echo(json.dumps(operation(client), indent=2))
    except ByokError as error:
        _fail(error, verbose)


@kms.command("list-keys")
@profile_option
@verbose_option
def kms_list_keys(profile_ref, verbose) -> None:
    """List the CMKs of the account in the profile's region."""
    def list_keys(client) -> dict:
        result = client.list_keys()
        return {
            "Keys": {"Key": result.keys},
            "TotalCount": result.total_count,
            "PageNumber": result.page_number,
            "PageSize": result.page_size,
            "RequestId": result.request_id,
        }

    _run_kms(profile_ref, verbose, list_keys)


@kms.command("describe-key")
@profile_option
@verbose_option
@click.argument("key_id")
def kms_describe_key(profile_ref, verbose, key_id) -> None:
    """Show the KeyMetadata of KEY_ID (a key id, alias or ARN)."""
    _run_kms(profile_ref, verbose, lambda client: client.describe_key(key_id).metadata.raw)


@kms.command("encrypt")
@profile_option
@verbose_option
@click.argument("key_id")
@click.option("--plaintext-file", type=click.File("r"), default="-", help="File holding the plaintext [default: standard input].")
def kms_encrypt(profile_ref, verbose, key_id, plaintext_file) -> None:
    """Encrypt the plaintext read from a file or standard input with KEY_ID."""
    plaintext = plaintext_file.read()
    def encrypt(client) -> dict:
        result = client.encrypt(key_id, plaintext)
        return {
            "KeyId": result.key_id,
            "KeyVersionId": result.key_version_id,
            "CiphertextBlob": result.ciphertext_blob,
            "RequestId": result.request_id,
        }

    _run_kms(profile_ref, verbose, encrypt)


@kms.command("decrypt")
@profile_option
@verbose_option
@click.argument("ciphertext_blob")
def kms_decrypt(profile_ref, verbose, ciphertext_blob) -> None:
    """Decrypt CIPHERTEXT_BLOB; the blob names its key."""
    if not ciphertext_blob.strip():
        _fail(ConfigError("CIPHERTEXT_BLOB is empty", fix="pass the CiphertextBlob that 'byok kms encrypt' returned"), verbose)
        return

    def decrypt(client) -> dict:
        result = client.decrypt(ciphertext_blob.strip())
        return {
            "KeyId": result.key_id,
            "KeyVersionId": result.key_version_id,
            "Plaintext": result.plaintext,
            "RequestId": result.request_id,
        }

    _run_kms(profile_ref, verbose, decrypt)


# -- doctor -------------------------------------------------------------------------------------


@main.command()
@profile_option
@verbose_option
def doctor(profile_ref, verbose) -> None:
    """Check that the profile, its PKCS#11 module and its secrets are usable."""
    from byok.secrets import state_dir

    _configure_logging(verbose)
    problems = 0
    try:
        profile = _load_profile(profile_ref)
    except ByokError as error:
        _fail(error, verbose)
        return
    click.echo(f"profile: {profile.name} ({profile.source})")
    click.echo(f"state directory: {state_dir()}")
    try:
        click.echo(f"PKCS#11 module: {profile.hsm.module_path()}")
    except ByokError as error:
        problems += 1
        click.echo(f"PKCS#11 module: MISSING: {error.diagnostics()}")
    try:
        from byok.hsm.softhsm import resolve_pin

        resolve_pin(profile.hsm, state_dir())
        click.echo("HSM PIN: found")
    except ByokError as error:
        if profile.hsm.managed:
            init_command = "byok opencryptoki init" if profile.hsm.family == "opencryptoki" else "byok softhsm init"
            click.echo(f"HSM PIN: not created yet; '{init_command} --profile {profile.name}' creates the token and its PINs")
        else:
            problems += 1
            click.echo(f"HSM PIN: MISSING: {error.diagnostics()}")
    click.echo(f"KMS endpoint: {profile.kms.endpoint} ({profile.kms.region}), {profile.kms.wrapping_algorithm}")
    if not profile.kms.uses_emulator:
        for variable, what in (
            (profile.kms.access_key_id_env, "AccessKey id"),
            (profile.kms.access_key_secret_env, "AccessKey secret"),
        ):
            if os.environ.get(variable or ""):
                click.echo(f"{what}: found in {variable}")
            else:
                problems += 1
                click.echo(f"{what}: MISSING: environment variable {variable} is not set")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
