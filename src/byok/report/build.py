"""Build the Allure report of one run folder and check it.

Order: side files, history from the previous run in the same reports folder, one
``allure generate --single-file``, the history of the new report kept next to it for
the next run, then the external-host scan and the reconciliation with pytest.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from byok.report.checks import (
    ExternalReference,
    Reconciliation,
    find_external_references,
    reconcile,
)
from byok.report.generator import AllureCli
from byok.report.sidefiles import (
    read_build_order,
    read_report_name,
    write_categories,
    write_environment,
    write_executor,
)
from byok.report.singlefile import extract_history

logger = logging.getLogger(__name__)

REPORT_DIR = "allure-report"
HISTORY_DIR = "history"
NO_HISTORY = "none (first run of this profile in this folder)"


@dataclass
class ReportOutcome:
    """The generated report and what its checks found."""

    html: Path
    build_order: int
    history: str
    external_references: list[ExternalReference] = field(default_factory=list)
    reconciliation: Reconciliation | None = None

    @property
    def complete(self) -> bool:
        return not self.external_references and self.reconciliation is not None and self.reconciliation.complete

    def problems(self) -> list[str]:
        """Return one line per reason the report cannot be handed out."""
        lines = [f"external reference {ref.url} in {ref.where}" for ref in self.external_references]
        if self.reconciliation is not None:
            lines.extend(self.reconciliation.differences)
        return lines


def previous_run(output_dir: Path, report_name: str | None = None) -> tuple[Path, int] | None:
    """Return the newest earlier run folder next to ``output_dir`` and its build order.

    "Newest" is the highest ``buildOrder`` in ``allure-results/executor.json``, so
    run folders may have any name. With ``report_name``, only runs of the same report
    (the same profile) count, so one profile's trend never mixes in another's runs.
    """
    candidates = []
    if not output_dir.parent.is_dir():
        return None
    for sibling in output_dir.parent.iterdir():
        if sibling == output_dir or not sibling.is_dir():
            continue
        if report_name is not None and read_report_name(sibling) != report_name:
            continue
        order = read_build_order(sibling)
        if order is not None:
            candidates.append((order, sibling.stat().st_mtime, sibling))
    if not candidates:
        return None
    order, _, folder = max(candidates)
    return folder, order


def _copy_history(previous: Path, results_dir: Path) -> bool:
    """Copy the previous report's history into ``results_dir/history``; return whether any was found."""
    source = previous / REPORT_DIR / HISTORY_DIR
    target = results_dir / HISTORY_DIR
    if not source.is_dir() and (previous / REPORT_DIR / "index.html").is_file():
        extract_history(previous / REPORT_DIR / "index.html", source)
    if not source.is_dir() or not any(source.glob("*.json")):
        return False
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    return True


def build_report(
    cli: AllureCli,
    output_dir: Path,
    summary: dict[str, Any],
    *,
    run_id: str,
    report_name: str,
    environment: dict[str, Any],
    allowed_hosts: tuple[str, ...] = (),
) -> ReportOutcome:
    """Write the side files, generate ``allure-report/index.html`` and check it."""
    results_dir = output_dir / "allure-results"
    results_dir.mkdir(parents=True, exist_ok=True)

    found = previous_run(output_dir, report_name)
    build_order = found[1] + 1 if found else 1
    history = NO_HISTORY
    if found and _copy_history(found[0], results_dir):
        history = f"from run {found[0].name} (build {found[1]})"
    elif found:
        history = f"none (the previous run {found[0].name} has no report history)"
    logger.info("report history: %s", history)

    write_environment(results_dir, {**environment, "allure.commandline": cli.version, "java": cli.java_version, "history": history})
    write_categories(results_dir)
    write_executor(results_dir, run_id=run_id, build_order=build_order, report_name=report_name)

    report_dir = output_dir / REPORT_DIR
    cli.generate(results_dir, report_dir, single_file=True)
    html_path = report_dir / "index.html"
    # The single file embeds its history. Kept as files next to the page, it lets the next
    # run in this folder copy it without parsing HTML.
    extract_history(html_path, report_dir / HISTORY_DIR)

    html = html_path.read_text(encoding="utf-8")
    outcome = ReportOutcome(html_path, build_order, history)
    outcome.external_references = find_external_references(html, allowed_hosts=allowed_hosts)
    outcome.reconciliation = reconcile(summary, results_dir, html)
    return outcome
