"""One runbook run from the command line: validate, execute, judge, write the bundle, seal it.

Order matters: everything that can be checked without executing (notebook, parameters,
output folder, profile, kernel) is checked first and fails with exit status 2 before the
HSM or KMS is touched. After execution the bundle is written in full, also for a failed
run, but only a passed run whose files hold no secret value is signed.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from byok import __version__
from byok.errors import ByokError, ConfigError
from byok.evidence import ceremony
from byok.evidence.bundle import SealResult, SecretLeakFound, scan_bundle, seal_bundle
from byok.profile import Profile, project_root
from byok.runbook import EMULATOR_READY_ENV, EVIDENCE_ENV, OUTPUT_NOTEBOOK_ENV, RUN_ID_ENV, runner
from byok.runbook.parameters import check_parameters
from byok.secrets import STATE_DIR_ENV, load_secret, register_secret_value, state_dir

logger = logging.getLogger(__name__)

RUNBOOKS = {
    "import": "import_key_material",
    "reimport": "reimport_key_material",
    "verify-cmk": "verify_cmk",
}
LIBRARIES = (
    "papermill", "nbclient", "nbformat", "ipykernel", "nbconvert", "PyKCS11", "cryptography",
    "aliyun-python-sdk-core", "aliyun-python-sdk-kms", "pyHanko", "asn1crypto",
)
EXIT_PASSED, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_EXTERNAL_URL = re.compile(rb"(?:https?:)?//[A-Za-z0-9.-]+\.[A-Za-z]{2,}[/\"' >]")


@dataclass
class RunbookRun:
    run_id: str
    output_dir: Path
    exit_status: int
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seal: SealResult | None = None
    result: dict[str, Any] | None = None


def new_run_id() -> str:
    import secrets

    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def _utc() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str:
    root = project_root()
    try:
        completed = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return "not available"
    return completed.stdout.strip() if completed.returncode == 0 else "not available"


def _profile_parameter(reference: str) -> str:
    """Return the profile reference for the kernel: a TOML path made absolute, a profile name unchanged.

    load_profile treats a reference ending in .toml or containing a path separator as a
    file, and the kernel's working directory is a temporary folder.
    """
    if reference.endswith(".toml") or os.sep in reference:
        return str(Path(reference).expanduser().resolve())
    return reference


def _prepare_output(output_dir: Path, force: bool) -> None:
    if output_dir.exists() and any(output_dir.iterdir()):
        if not force:
            raise ConfigError(
                f"output folder {output_dir} is not empty",
                fix="choose a new --output folder, or pass --force to replace its contents",
            )
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)


def _register_runner_secrets(profile: Profile, state: Path, ready: dict[str, Any] | None) -> None:
    """Load the secrets this process can know, so the bundle scan looks for them."""
    from byok.hsm import init_token, resolve_pin

    if profile.hsm.family == "softhsm" and profile.hsm.managed:
        init_token(profile.hsm, state)
    resolve_pin(profile.hsm, state)
    if ready is not None:
        load_secret("emulator root AccessKey secret", env=None, file=Path(ready["access_key_secret_file"]))
        register_secret_value("AccessKey id", ready["access_key_id"])
    else:
        key_id = os.environ.get(profile.kms.access_key_id_env or "", "")
        if key_id:
            register_secret_value("AccessKey id", key_id)
        if profile.kms.access_key_secret_env and os.environ.get(profile.kms.access_key_secret_env):
            load_secret("AccessKey secret", env=profile.kms.access_key_secret_env, file=None)


def reject_secret_parameters(parameters: dict[str, Any], profile: Profile) -> None:
    """Raise ConfigError when a notebook parameter contains a secret value of this state directory or profile.

    papermill writes parameters into the notebook twice (the injected cell and its
    metadata), and a runbook may pass them on to KMS, so a secret must be refused before
    anything runs. The error names the parameter and the kind of secret, never the value.
    """
    folder = state_dir() / "secrets"
    known: dict[str, str] = {}
    if folder.is_dir():
        for path in folder.iterdir():
            if path.is_file():
                value = path.read_text(encoding="utf-8").strip()
                if value:
                    known[value] = path.name
    for variable in (profile.hsm.pin_env, profile.kms.access_key_secret_env, profile.kms.access_key_id_env):
        value = os.environ.get(variable or "", "")
        if value:
            known[value] = variable
    for name, value in parameters.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        for secret, secret_name in known.items():
            if secret and secret in text:
                raise ConfigError(
                    f"parameter {name!r} contains the value of {secret_name}, a secret",
                    fix="never pass secrets as parameters; runbooks read PINs and AccessKeys from the "
                    "environment or the state directory themselves",
                )


def _render_notebook_html(notebook: Path, target: Path) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    book = nbformat.read(notebook, as_version=4)
    # The "basic" template links no CDN scripts or styles (the default "lab" template does).
    body, _resources = HTMLExporter(template_name="basic").from_notebook_node(book)
    target.write_text(body, encoding="utf-8")


def external_urls(folder: Path) -> list[str]:
    """Return the HTML files of ``folder`` that reference an external URL."""
    return [path.name for path in sorted(folder.glob("*.html")) if _EXTERNAL_URL.search(path.read_bytes())]


def run_runbook(
    kind: str,
    profile: Profile,
    *,
    profile_reference: str,
    raw_parameters: dict[str, str],
    output_dir: Path | None = None,
    notebook: Path | None = None,
    run_id: str | None = None,
    execution_timeout: int = 600,
    force: bool = False,
    start_emulator: Callable[[Profile, Path], Any] | None = None,
) -> RunbookRun:
    """Run the ``kind`` runbook and write its bundle; ConfigError means nothing was executed.

    ``start_emulator`` is given by the front end (the CLI) for profiles that use the
    local KMS emulator: it returns a started process object with ``ready`` and ``stop()``,
    or None. Client-side modules never import the emulator themselves.
    """
    notebook = Path(notebook) if notebook else project_root() / "runbooks" / f"{RUNBOOKS[kind]}.ipynb"
    if not notebook.is_file():
        raise ConfigError(f"runbook {notebook} does not exist", fix="give the path of an .ipynb file")
    # papermill's kernel client takes the cell timeout as a whole number of seconds.
    if not isinstance(execution_timeout, int) or execution_timeout < 1:
        raise ConfigError(
            f"--execution-timeout {execution_timeout!r} is not a whole number of seconds of at least 1",
            fix="give whole seconds, e.g. 600",
        )
    declared = runner.declared_parameters(notebook)
    parameters = runner.convert_parameters(raw_parameters, declared, notebook)
    reject_secret_parameters(parameters, profile)
    if "profile" in declared:
        if "profile" in parameters and parameters["profile"] != profile_reference:
            raise ConfigError(
                f"-p profile {parameters['profile']!r} disagrees with --profile {profile_reference!r}",
                fix="name the profile once, with --profile",
            )
        parameters["profile"] = _profile_parameter(profile_reference)
    # The kernel runs in a temporary folder, so folders named by the operator are made
    # absolute here, against the directory byok was started in.
    parameters = check_parameters(RUNBOOKS[kind], parameters, declared=declared)

    run_id = run_id or new_run_id()
    output_dir = Path(output_dir) if output_dir else Path("reports") / run_id
    _prepare_output(output_dir, force)
    output_dir = output_dir.resolve()
    state = state_dir()
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    record_run: dict[str, Any] = {
        "id": run_id,
        "runbook": notebook.name,
        "runbook SHA-256 before execution": runner.file_sha256(notebook),
        "byok version": __version__,
        "git commit": git_commit(),
        "profile": profile.name,
        "libraries": library_versions(),
        "started_utc": _utc(),
        "requested parameters": parameters,
    }

    with tempfile.TemporaryDirectory(prefix="byok-runbook-") as work:
        work_dir = Path(work)
        with runner.explicit_kernel() as kernel_name:
            runner.probe_kernel(kernel_name)
            emulator = start_emulator(profile, state) if start_emulator and profile.kms.uses_emulator else None
            try:
                ready = emulator.ready if emulator is not None else None
                _register_runner_secrets(profile, state, ready)
                executed = output_dir / notebook.name
                evidence_partial = work_dir / "ceremony.json"
                variables = {
                    STATE_DIR_ENV: str(state),
                    EVIDENCE_ENV: str(evidence_partial),
                    OUTPUT_NOTEBOOK_ENV: str(executed),
                    RUN_ID_ENV: run_id,
                }
                if emulator is not None:
                    variables[EMULATOR_READY_ENV] = str(emulator.ready_file)
                with runner.environment(variables):
                    raised = runner.execute(
                        notebook, executed, parameters, kernel_name=kernel_name,
                        execution_timeout=execution_timeout, cwd=work_dir,
                    )
            finally:
                if emulator is not None:
                    emulator.stop()
        outcome = runner.judge(executed, parameters, raised)
        record = ceremony.load(evidence_partial) if evidence_partial.is_file() else ceremony.new_record()

    record_run["finished_utc"] = _utc()
    record_run["verdict"] = "passed" if outcome.passed else "failed"
    record["run"] = record_run
    for cell in outcome.failed_cells:
        record["exceptions"].append(ceremony.exception_entry("failed cell", cell.get("error") or str(cell.get("status")), cell=cell["label"]))
    if raised:
        record["exceptions"].append(ceremony.exception_entry("execution stopped", raised))
    if outcome.result:
        record["kernel secret scan"] = outcome.result.get("kernel_secret_scan")

    problems = list(outcome.problems)
    warnings = []
    if record.get("wrapping", {}).get("verdict") == "disallowed":
        warnings.append(f"key transport: {record['wrapping']['reason']}")
    roles = {person.get("role") for person in record.get("people", [])}
    if kind == "import" and "operator" not in roles:
        # A key ceremony record names who acted. byok cannot verify the names, but it flags their absence.
        warnings.append("people: no operator declared (pass -p operator NAME, and -p approver NAME)")
    record["run"]["warnings"] = warnings
    _write_bundle(record, executed, output_dir)
    urls = external_urls(output_dir)
    if urls:
        problems.append(f"HTML files reference external URLs: {', '.join(urls)}")

    try:
        scanned, names = scan_bundle(output_dir)
        record["secret_scan"] = {
            "scanned": f"every file of the bundle ({scanned} files), the notebook metadata included",
            "searched for": names,
            "kernel-only values": "import token, wrapped blob, round-trip plaintexts and ciphertexts: "
            "searched by the kernel in the saved notebook (see 'kernel secret scan')",
            "found": "nothing",
        }
    except SecretLeakFound as error:
        problems.append(error.message)
        record["secret_scan"] = {"found": [f"{Path(hit.path).name}: {hit.secret_name}" for hit in error.hits]}
    if problems:
        record["run"]["verdict"] = "failed"
        record["run"]["problems"] = problems
    _write_evidence(record, output_dir)

    result = RunbookRun(run_id, output_dir, EXIT_PASSED, problems, warnings=warnings, result=outcome.result)
    if problems:
        result.exit_status = EXIT_FAILED
        # The front end prints the problems, so this line only counts them and each error appears once.
        logger.info("Runbook %s failed with %d problem(s), bundle %s left unsigned", notebook.name, len(problems), output_dir)
        return result
    try:
        result.seal = seal_bundle(output_dir, profile, state_dir=state)
    except ByokError as error:
        result.problems.append(f"sealing failed: {error.message}")
        result.exit_status = EXIT_FAILED
    return result


def _write_evidence(record: dict[str, Any], output_dir: Path) -> None:
    ceremony.save(record, output_dir / ceremony.EVIDENCE_NAME)
    (output_dir / ceremony.EVIDENCE_HTML_NAME).write_text(ceremony.render_html(record), encoding="utf-8")


def _write_bundle(record: dict[str, Any], executed: Path, output_dir: Path) -> None:
    _write_evidence(record, output_dir)
    if executed.is_file():
        try:
            _render_notebook_html(executed, executed.with_suffix(".html"))
        except Exception as error:  # noqa: BLE001 - nbconvert raises many types; the run still keeps its notebook
            logger.warning("Rendering %s as HTML failed: %s", executed.name, error)
            record["exceptions"].append(ceremony.exception_entry("notebook rendering", str(error)))
