"""The Allure report of a ``byok certify`` run: side files, history, generation and checks.

``byok.certify`` calls :func:`build_report` after the pytest child has finished. The
report is only called complete when the HTML references no external host and every
scenario pytest ran has a readable Allure result with the same outcome.
"""

from byok.report.build import ReportOutcome, build_report
from byok.report.checks import (
    ExternalReference,
    Reconciliation,
    find_external_references,
    reconcile,
)
from byok.report.generator import AllureCli, AllureNotAvailable, find_allure_cli

__all__ = [
    "AllureCli",
    "AllureNotAvailable",
    "ExternalReference",
    "Reconciliation",
    "ReportOutcome",
    "build_report",
    "find_allure_cli",
    "find_external_references",
    "reconcile",
]
