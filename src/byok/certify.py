"""``byok certify``: run the Gherkin suite for one profile and write the run's report folder.

The suite runs in a child pytest process so that the PKCS#11 module, the SoftHSM2
configuration and the emulator it starts belong to that run alone. The parent reads the
child's summary, generates the Allure report (``byok.report``) and checks it, scans
everything the run wrote for secrets, prints one screen of results and returns the
command contract's exit status.
"""

from __future__ import annotations

import json
import logging
import os
import secrets as _random
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from byok.errors import ByokError, ConfigError
from byok.evidence.leaks import scan_bytes, scan_paths
from byok.profile import Profile, project_root
from byok.report import AllureCli, ReportOutcome, build_report, find_allure_cli
from byok.secrets import STATE_DIR_ENV, register_secret_value, state_dir

logger = logging.getLogger(__name__)

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BLOCKED = 3


@dataclass
class CertifyResult:
    exit_status: int
    output_dir: Path
    summary: dict
    console: str
    report: ReportOutcome | None = None
    usage_message: str = ""
    seal: Any = None
    seal_problem: str = ""


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + _random.token_hex(3)


def default_output_dir(run_id: str) -> Path:
    return Path.cwd() / "reports" / run_id


def register_state_secrets(base: Path, profile: Profile) -> None:
    """Register every secret the run may know, so the leak scan looks for each of them."""
    folder = base / "secrets"
    if folder.is_dir():
        for path in folder.iterdir():
            if path.is_file():
                register_secret_value(path.name, path.read_text(encoding="utf-8").strip())
    for env in (profile.hsm.pin_env, profile.kms.access_key_secret_env):
        if env and os.environ.get(env):
            register_secret_value(env, os.environ[env])


def run_certify(
    profile: Profile,
    *,
    output_dir: Path | None = None,
    run_id: str | None = None,
    pytest_args: list[str] | None = None,
    force: bool = False,
    verbose: bool = False,
) -> CertifyResult:
    """Run the suite and return its result; raise ConfigError for usage problems."""
    run_id = run_id or new_run_id()
    output = (output_dir or default_output_dir(run_id)).resolve()
    pytest_args = list(pytest_args or [])
    check_pytest_args(pytest_args)
    reuse_output = output.exists() and any(output.iterdir())
    if reuse_output:
        if not force:
            raise ConfigError(
                f"output folder {output} already contains files",
                fix="choose another --output, or pass --force to replace the earlier run's files in it",
            )
        foreign = sorted(path.name for path in output.iterdir() if path.name not in RUN_ARTIFACTS)
        if foreign:
            raise ConfigError(
                f"output folder {output} contains files byok certify did not write: {', '.join(foreign[:10])}",
                fix="choose another --output; --force only replaces an earlier run's own files, because everything "
                "in the folder gets signed",
            )
    # Validate first: a run that cannot reach its HSM, its secrets or its report tool
    # is a configuration error, reported before any scenario starts and before anything
    # of an earlier run is removed.
    preflight(profile)
    allure_cli = find_allure_cli()
    if reuse_output:
        _remove_earlier_run(output)
    output.mkdir(parents=True, exist_ok=True)
    base = state_dir()
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    root = project_root()

    command = [
        sys.executable,
        "-m",
        "pytest",
        str(root / "steps" / "test_features.py"),
        f"--rootdir={root}",
        "-c",
        str(root / "pyproject.toml"),
        "--profile",
        str(profile.source or profile.name),
        "--wrapping-algorithm",
        profile.kms.wrapping_algorithm,
        "--run-id",
        run_id,
        "--alluredir",
        str(output / "allure-results"),
        "--byok-summary",
        str(output / "summary.json"),
        "--byok-evidence",
        str(output / "evidence.json"),
        "-p",
        "no:cacheprovider",
        "-v" if verbose else "-q",
        "-rA",
        *pytest_args,
    ]
    environment = dict(os.environ)
    environment[STATE_DIR_ENV] = str(base)
    logger.info("running the %s suite, run %s, report folder %s", profile.name, run_id, output)
    completed = _run_child(command, root, environment)
    console = completed.stdout
    (output / "pytest-output.txt").write_text(console, encoding="utf-8")

    summary_path = output / "summary.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    else:
        summary = {"exitstatus": completed.returncode, "scenarios": []}
    summary["selection"] = pytest_args

    report = None
    if completed.returncode in (0, 1) and summary_path.is_file():
        report = _build_report(allure_cli, output, summary, run_id=run_id, profile=profile)
        summary["report"] = {
            "html": str(report.html.relative_to(output)),
            "build_order": report.build_order,
            "history": report.history,
            "complete": report.complete,
            "problems": report.problems(),
        }
    usage_message = _usage_message(console) if completed.returncode == 4 else ""

    register_state_secrets(base, profile)
    hits, scanned = scan_paths([output])
    hits += scan_bytes(console.encode("utf-8"), where="console output")
    summary["secret_scan"] = {
        "files_scanned": scanned,
        "hits": [{"file": hit.path, "secret": hit.secret_name, "encoding": hit.encoding} for hit in hits],
    }
    summary_path.write_text(json.dumps(summary, indent=2), encoding="utf-8")

    status = _exit_status(completed.returncode, summary)
    seal = None
    # A run that executed is sealed whatever its verdict, because a failed run is evidence
    # too; a run with a leak is never signed.
    if completed.returncode in (0, 1) and not hits and status != EXIT_USAGE and summary.get("scenarios"):
        try:
            seal = _seal(output, profile, base)
        except ByokError as error:
            seal_problem = error.message
            status = EXIT_FAILED
        else:
            seal_problem = ""
    elif hits:
        seal_problem = "a secret value was found in the run's output, so nothing was signed"
    else:
        seal_problem = "no scenario ran, so there is nothing to sign"
    result = CertifyResult(status, output, summary, console, report, usage_message)
    result.seal = seal
    result.seal_problem = seal_problem
    return result


# Files and folders a certify run writes into its report folder. --force removes these
# before a new run, so the report and the signature never mix two runs.
RUN_ARTIFACTS = (
    "allure-results",
    "allure-report",
    "summary.json",
    "evidence.json",
    "pytest-output.txt",
    "SHA256SUMS",
    "SHA256SUMS.p7s",
    "report-signer.pem",
)


def _remove_earlier_run(output: Path) -> None:
    for name in RUN_ARTIFACTS:
        path = output / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


# Options byok certify sets for the child pytest itself. Passed again after --, they would
# run and sign a different certification than the console and the folder describe.
_RESERVED_PYTEST_OPTIONS = (
    "--profile",
    "--wrapping-algorithm",
    "--run-id",
    "--alluredir",
    "--clean-alluredir",
    "--byok-summary",
    "--byok-evidence",
    "--rootdir",
    "-c",
    "-p",
    "--confcutdir",
)


def check_pytest_args(pytest_args: list[str]) -> None:
    """Reject pytest arguments that would change what byok certify runs or where it writes."""
    for argument in pytest_args:
        name = argument.split("=", 1)[0]
        if name in _RESERVED_PYTEST_OPTIONS:
            raise ConfigError(
                f"pytest argument {argument!r} is set by byok certify itself",
                fix="use byok certify's own options (--profile, --wrapping-algorithm, --output, --run-id) "
                "and pass only selections such as -k NAME or -m MARK after --",
            )


def _run_child(command: list[str], root: Path, environment: dict[str, str]) -> subprocess.CompletedProcess:
    """Run the child pytest; on an interrupt, let it tear down (stopping its emulators) first."""
    process = subprocess.Popen(
        command, cwd=root, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        stdout, _ = process.communicate()
    except KeyboardInterrupt:
        logger.warning("interrupted: stopping the test run (PID %d) so it stops what it started", process.pid)
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
        raise
    return subprocess.CompletedProcess(command, process.returncode, stdout, None)


def preflight(profile: Profile) -> None:
    """Raise ConfigError when the profile cannot run here, naming what is missing and the fix."""
    from byok.hsm import resolve_pin

    if profile.fips == "required" and profile.kms.wrapping_algorithm == "RSAES_PKCS1_V1_5":
        raise ConfigError(
            f"profile {profile.name} requires FIPS mode, which forbids RSAES_PKCS1_V1_5 "
            "(CKM_RSA_PKCS key transport)",
            fix="use --wrapping-algorithm RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1",
        )
    profile.hsm.module_path()
    if not profile.hsm.managed:
        # byok creates the PINs of the tokens it manages; any other token's PIN must exist now.
        resolve_pin(profile.hsm, state_dir())
    if not profile.kms.uses_emulator:
        for variable, what in (
            (profile.kms.access_key_id_env, "AccessKey id"),
            (profile.kms.access_key_secret_env, "AccessKey secret"),
        ):
            if variable and not os.environ.get(variable):
                raise ConfigError(
                    f"the {what} for {profile.kms.endpoint} is not in environment variable {variable}",
                    fix=f"export {variable}=... before running (never pass it on the command line)",
                )


def _seal(output: Path, profile: Profile, base: Path):
    """Sign the report folder with the profile's report key on its HSM (SHA256SUMS and its CMS signature)."""
    from byok.evidence.bundle import seal_bundle

    daemon = None
    if profile.hsm.family == "opencryptoki" and profile.hsm.managed:
        # The test run stopped the pkcsslotd it started; signing needs it once more.
        from byok.hsm.opencryptoki import prepare_token

        daemon, _ = prepare_token(profile.hsm, base)
    try:
        return seal_bundle(output, profile, state_dir=base)
    finally:
        if daemon is not None:
            daemon.stop()


def _build_report(cli: AllureCli, output: Path, summary: dict, *, run_id: str, profile: Profile) -> ReportOutcome:
    environment = dict(summary.get("environment") or {})
    environment.setdefault("profile", profile.name)
    environment.setdefault("kms.wrapping_algorithm", profile.kms.wrapping_algorithm)
    environment["run_id"] = run_id
    environment["selection"] = " ".join(summary.get("selection") or []) or "all scenarios"
    # The real service's endpoint appears in recorded evidence (the KmsClient repr) as text.
    allowed_hosts = () if profile.kms.uses_emulator else (profile.kms.endpoint.split("://")[-1].split("/")[0].split(":")[0],)
    return build_report(
        cli,
        output,
        summary,
        run_id=run_id,
        report_name=f"byok certify: {profile.name}",
        environment=environment,
        allowed_hosts=allowed_hosts,
    )


def _usage_message(console: str) -> str:
    """Return pytest's usage error lines (the text after ``ERROR:``) from the child's output."""
    lines = console.splitlines()
    for number, line in enumerate(lines):
        if line.startswith("ERROR:"):
            return "\n".join(lines[number:]).strip()
    return ""


def _exit_status(pytest_status: int, summary: dict) -> int:
    if summary["secret_scan"]["hits"] or (summary.get("results_secret_scan") or {}).get("hits"):
        return EXIT_FAILED
    if pytest_status in (4, 5):
        # 4: pytest usage error; 5: the selection after -- matched no scenario.
        return EXIT_USAGE
    if "report" in summary and not summary["report"]["complete"]:
        return EXIT_FAILED
    outcomes = [row["outcome"] for row in summary.get("scenarios", [])]
    if not outcomes or pytest_status not in (0, 1):
        return EXIT_FAILED
    if any(outcome in ("failed", "error") for outcome in outcomes):
        return EXIT_FAILED
    if any(outcome == "blocked" for outcome in outcomes):
        return EXIT_BLOCKED
    return EXIT_PASSED


def format_summary(result: CertifyResult, profile: Profile) -> str:
    """Return the one-screen summary: each scenario, its verdict and its duration."""
    rows = result.summary.get("scenarios", [])
    width = min(max((len(row["scenario"]) for row in rows), default=20), 78)
    lines = [f"byok certify: profile {profile.name}, {profile.kms.wrapping_algorithm}", ""]
    current_feature = None
    blocked_reasons: dict[str, int] = {}
    for row in rows:
        if row["feature"] != current_feature:
            current_feature = row["feature"]
            lines.append(current_feature or "(no feature)")
        name = row["scenario"]
        if row.get("parameters"):
            name += " [" + ", ".join(str(value) for value in row["parameters"].values()) + "]"
        if len(name) > width:
            name = name[: width - 1] + "…"
        lines.append(f"  {name:<{width}}  {row['outcome'].upper():<8} {row['duration']:6.2f}s")
        if row["outcome"] == "blocked":
            reason_number = blocked_reasons.setdefault(row.get("reason", ""), len(blocked_reasons) + 1)
            lines.append(f"      blocked by the environment, reason {reason_number} below")
        elif row["outcome"] != "passed" and row.get("reason"):
            lines.append(f"      {row['reason'][:200]}")
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["outcome"]] = counts.get(row["outcome"], 0) + 1
    lines.append("")
    lines.append(", ".join(f"{count} {outcome}" for outcome, count in sorted(counts.items())) or "no scenario ran")
    selection = result.summary.get("selection") or []
    if selection:
        lines.append(
            f"PARTIAL RUN: pytest selection {' '.join(selection)!r}; only the scenarios above were certified"
        )
        if not rows:
            lines.append("the selection matched no scenario; check the -k or -m expression")
    for reason, number in blocked_reasons.items():
        lines.append(f"blocked reason {number}: {reason.removeprefix('blocked by environment: ')}")
    report = result.summary.get("report")
    if report:
        lines.append(f"report: {result.output_dir / report['html']}")
        lines.append(f"report history: {report['history']}")
        if not report["complete"]:
            lines.append(f"REPORT INCOMPLETE: {len(report['problems'])} difference(s) between pytest and the Allure report")
            lines.extend(f"  {problem}" for problem in report["problems"][:50])
    if result.usage_message:
        lines.append(result.usage_message)
    child_scan = result.summary.get("results_secret_scan") or {}
    if child_scan.get("hits"):
        lines.append(f"SECRET LEAK: {len(child_scan['hits'])} hit(s) in allure-results found by the test run itself")
        for hit in child_scan["hits"]:
            lines.append(f"  {hit['secret']} ({hit['encoding']}) in {hit['file']}")
    scan = result.summary["secret_scan"]
    if scan["hits"]:
        lines.append(f"SECRET LEAK: {len(scan['hits'])} hit(s) in the run's output; the report must not be shared")
        for hit in scan["hits"]:
            lines.append(f"  {hit['secret']} ({hit['encoding']}) in {hit['file']}")
    else:
        lines.append(f"secret scan: {scan['files_scanned']} file(s) and the console output, no secret found")
    if result.seal is not None:
        lines.append(
            f"sealed: SHA256SUMS over {len(result.seal.files)} file(s), signed in SHA256SUMS.p7s by {result.seal.signer_subject}"
        )
    elif result.seal_problem:
        lines.append(f"NOT SEALED: {result.seal_problem}")
    lines.append(f"report folder: {result.output_dir}")
    verdict = {EXIT_PASSED: "PASSED", EXIT_FAILED: "FAILED", EXIT_BLOCKED: "BLOCKED by the environment", EXIT_USAGE: "USAGE ERROR"}
    if selection and result.exit_status in (EXIT_PASSED, EXIT_BLOCKED):
        verdict = {**verdict, result.exit_status: verdict[result.exit_status] + " (partial run)"}
    lines.append(f"verdict: {verdict.get(result.exit_status, result.exit_status)}")
    return "\n".join(lines)
