"""The Allure 2 command line: finding it, checking its Java, and generating reports.

byok uses Allure 2 from the npm package ``allure-commandline`` (installed into the
project's ``node_modules/`` by ``npm ci``) because its ``--single-file`` report opens
from ``file://`` and, with ``ALLURE_NO_ANALYTICS=true``, contains no analytics tag.
The value must be exactly ``true``: with ``1``, Allure 2 still writes the Google
Analytics script into the page.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from byok.errors import ConfigError
from byok.profile import project_root

logger = logging.getLogger(__name__)

ALLURE_ENV = "BYOK_ALLURE"
MIN_JAVA_MAJOR = 17
GENERATE_TIMEOUT_SECONDS = 600

_JAVA_VERSION = re.compile(r'version "((\d+)(?:\.(\d+))?[^"]*)"')


class AllureNotAvailable(ConfigError):
    """The Allure command line or the Java runtime it needs is missing."""


@dataclass(frozen=True)
class AllureCli:
    """A usable ``allure`` executable and the versions behind it."""

    executable: Path
    version: str
    java_version: str

    def generate(self, results_dir: Path, output_dir: Path, *, single_file: bool) -> subprocess.CompletedProcess:
        """Run ``allure generate --clean`` from ``results_dir`` into ``output_dir``.

        Raises ByokError-derived AllureNotAvailable when the command fails, quoting its output.
        """
        command = [str(self.executable), "generate", "--clean", "-o", str(output_dir), str(results_dir)]
        if single_file:
            command.insert(2, "--single-file")
        environment = dict(os.environ, ALLURE_NO_ANALYTICS="true")
        logger.info("running %s", " ".join(command))
        completed = subprocess.run(
            command,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=GENERATE_TIMEOUT_SECONDS,
            check=False,
        )
        if completed.returncode != 0:
            raise AllureNotAvailable(
                f"allure generate exited with status {completed.returncode} for {results_dir}: "
                f"{completed.stdout.strip()[-2000:]}",
                fix="run the command above by hand to see the full output; check the Java runtime",
            )
        return completed


def find_allure_cli() -> AllureCli:
    """Locate ``allure`` (``$BYOK_ALLURE`` or ``node_modules/.bin/allure``) and check Java 17+.

    Raises AllureNotAvailable naming what is missing and how to install it.
    """
    configured = os.environ.get(ALLURE_ENV)
    root = project_root()
    executable = Path(configured) if configured else root / "node_modules" / ".bin" / "allure"
    if not executable.is_file():
        raise AllureNotAvailable(
            f"the Allure command line was not found at {executable}",
            fix="run 'make setup' (it runs 'npm ci' for allure-commandline), "
            f"or set {ALLURE_ENV} to the allure executable",
        )
    java = shutil.which("java")
    if java is None:
        raise AllureNotAvailable(
            "the Allure command line needs Java, but 'java' is not on PATH",
            fix="run 'make setup' (it installs openjdk-17-jre-headless) or install Java 17 or later",
        )
    probe = subprocess.run([java, "-version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    match = _JAVA_VERSION.search(probe.stdout)
    major = int(match.group(2)) if match else 0
    if major == 1 and match and match.group(3):
        major = int(match.group(3))  # "1.8" style version strings
    if major < MIN_JAVA_MAJOR:
        raise AllureNotAvailable(
            f"the Allure command line needs Java {MIN_JAVA_MAJOR} or later, "
            f"'java -version' reports: {probe.stdout.splitlines()[0] if probe.stdout else 'nothing'}",
            fix="run 'make setup' (it installs openjdk-17-jre-headless) or put Java 17 first on PATH",
        )
    return AllureCli(executable, _allure_version(executable), match.group(1) if match else "")


def _allure_version(executable: Path) -> str:
    # node_modules/.bin/allure links to node_modules/allure-commandline/bin/allure.
    package = executable.resolve().parent.parent / "package.json"
    try:
        return str(json.loads(package.read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError):
        return "unknown"
