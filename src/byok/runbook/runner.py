"""Run a runbook notebook through papermill and judge the run from the executed notebook.

The kernel is always explicit: a kernelspec written to a temporary folder on
``JUPYTER_PATH`` that starts ``sys.executable -m ipykernel_launcher``, so the notebook runs
on byok's own interpreter whatever kernel name it was saved with. The kernel talks over
IPC (Unix sockets) instead of TCP on localhost.

papermill does not decide pass or fail reliably: a cell timeout raises
``nbclient.exceptions.CellTimeoutError`` and leaves a notebook whose metadata looks like a
completed run (papermill 2.7.0, nbclient 0.11.0). So the verdict here comes from the
exception raised, every cell's error outputs and status, the notebook's exception flag, the
one result bundle and the parameters read back.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from byok.errors import ByokError, ConfigError
from byok.runbook import RESULT_MIME

logger = logging.getLogger(__name__)

KERNEL_NAME = "byok-python"
PROBE_MODULES = ("PyKCS11", "aliyunsdkkms", "aliyunsdkcore", "byok.flow", "byok.runbook.support")


class RunbookUsageError(ConfigError):
    """The notebook or the parameters cannot be run as asked; nothing was executed."""


class KernelUnavailable(ByokError):
    """The kernel does not start or cannot import what the runbook needs."""


@dataclass
class ExecutionOutcome:
    """Verdict on one execution: the problems found, failed cells, the result bundle and the recorded parameters."""

    problems: list[str] = field(default_factory=list)
    failed_cells: list[dict[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    effective_parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.problems


# -- parameters -----------------------------------------------------------------------------


def declared_parameters(notebook: Path) -> dict[str, dict[str, Any]]:
    """Return the parameters the notebook's ``parameters`` cell declares, as papermill infers them."""
    import nbformat
    import papermill

    book = nbformat.read(notebook, as_version=4)
    if not any("parameters" in cell.metadata.get("tags", []) for cell in book.cells):
        raise RunbookUsageError(
            f"runbook {notebook} has no cell tagged 'parameters'",
            fix="tag the cell that declares the runbook's defaults with 'parameters'",
        )
    return papermill.inspect_notebook(str(notebook))


def convert_parameters(raw: dict[str, str], declared: dict[str, dict[str, Any]], notebook: Path) -> dict[str, Any]:
    """Convert ``-p NAME VALUE`` strings to the types the parameters cell declares.

    Raises RunbookUsageError naming the first parameter the notebook does not declare or
    whose value does not fit its type.
    """
    converted: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in declared:
            raise RunbookUsageError(
                f"parameter {name!r} is not declared in the parameters cell of {notebook.name}",
                fix=f"use one of: {', '.join(sorted(declared))}",
            )
        kind = declared[name].get("inferred_type_name") or "str"
        try:
            converted[name] = _convert(value, kind)
        except ValueError:
            raise RunbookUsageError(
                f"parameter {name!r} = {value!r} is not a valid {kind}",
                fix=f"pass a {kind} value for {name}",
            ) from None
    return converted


def _convert(value: str, kind: str) -> Any:
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "bool":
        lowered = value.lower()
        if lowered not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(value)
        return lowered in ("true", "1", "yes")
    if kind == "list":
        if value.startswith("["):
            parsed = json.loads(value)
            if not isinstance(parsed, list):
                raise ValueError(value)
            return parsed
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


# -- kernel ---------------------------------------------------------------------------------


@contextlib.contextmanager
def explicit_kernel() -> Iterator[str]:
    """Make the kernelspec ``byok-python`` for this interpreter visible to jupyter_client; yield its name."""
    with tempfile.TemporaryDirectory(prefix="byok-kernel-") as folder:
        spec_dir = Path(folder) / "kernels" / KERNEL_NAME
        spec_dir.mkdir(parents=True)
        (spec_dir / "kernel.json").write_text(
            json.dumps(
                {
                    # Without the history option IPython stores every cell, parameters included,
                    # in ~/.ipython/profile_default/history.sqlite (mode 0644).
                    "argv": [
                        sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                        "--HistoryManager.enabled=False",
                    ],
                    "display_name": f"byok ({sys.executable})",
                    "language": "python",
                    "metadata": {"debugger": False},
                }
            ),
            encoding="utf-8",
        )
        previous = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [folder, previous]))
        try:
            yield KERNEL_NAME
        finally:
            if previous is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = previous


def kernel_config():
    from traitlets.config import Config

    config = Config()
    config.KernelManager.transport = "ipc"
    return config


def available_kernels() -> list[str]:
    from jupyter_client.kernelspec import KernelSpecManager

    try:
        return sorted(KernelSpecManager().find_kernel_specs())
    except Exception as error:  # noqa: BLE001 - only for the message of another error
        return [f"(listing kernels failed: {error})"]


def probe_kernel(kernel_name: str, *, start_timeout: float = 60.0) -> None:
    """Start the kernel once and import what the runbooks need; raise KernelUnavailable otherwise."""
    import nbformat
    import papermill
    from nbformat.v4 import new_code_cell, new_notebook

    code = "\n".join(f"import {module}" for module in PROBE_MODULES)
    book = new_notebook(cells=[new_code_cell(code)])
    book.metadata["kernelspec"] = {"name": kernel_name, "display_name": kernel_name, "language": "python"}
    nbformat.validate(book)
    try:
        papermill.execute_notebook(
            book,
            None,
            kernel_name=kernel_name,
            progress_bar=False,
            start_timeout=start_timeout,
            execution_timeout=120,
            config=kernel_config(),
        )
    except Exception as error:  # noqa: BLE001 - papermill, nbclient and jupyter_client raise unrelated types here
        raise KernelUnavailable(
            f"the kernel {kernel_name!r} ({sys.executable}) did not start or cannot import "
            f"{', '.join(PROBE_MODULES)}: {type(error).__name__}: {error}. "
            f"Kernels available: {', '.join(available_kernels()) or 'none'}",
            fix=f"install byok into this interpreter ('{sys.executable} -m pip install -e .', as 'make test' does) "
            "so ipykernel, PyKCS11 and the Alibaba Cloud SDK import",
        ) from None


# -- execution and judgement ---------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def execute(
    notebook: Path,
    output: Path,
    parameters: dict[str, Any],
    *,
    kernel_name: str,
    execution_timeout: int,
    cwd: Path,
) -> str | None:
    """Execute the notebook into ``output``; return a description of the exception raised, if any."""
    import papermill
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    try:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters,
            kernel_name=kernel_name,
            progress_bar=False,
            execution_timeout=execution_timeout,
            start_timeout=120,
            cwd=str(cwd),
            log_output=False,
            config=kernel_config(),
        )
    except PapermillExecutionError as error:
        return f"execution stopped at execution count {error.exec_count}: {error.ename}: {error.evalue}"
    except CellTimeoutError:
        return f"a cell timed out after {execution_timeout:g} s (--execution-timeout)"
    except DeadKernelError as error:
        return f"the kernel died: {error}"
    return None


def _cell_label(book, index: int) -> str:
    cell = book.cells[index]
    lines = [line.strip() for line in cell.source.strip().splitlines() if line.strip()]
    text = "; ".join(lines)
    return f"cell {index} ({text[:80]}{'...' if len(text) > 80 else ''})"


def judge(output: Path, requested: dict[str, Any], raised: str | None) -> ExecutionOutcome:
    """Decide pass or fail from the executed notebook and the exception ``execute`` reported."""
    import nbformat

    outcome = ExecutionOutcome()
    if not output.is_file():
        if raised:
            outcome.problems.append(raised)
        outcome.problems.append("papermill wrote no output notebook")
        return outcome
    book = nbformat.read(output, as_version=4)
    papermill_meta = book.metadata.get("papermill", {})

    results = []
    pending: list[str] = []
    for index, cell in enumerate(book.cells):
        if cell.cell_type != "code":
            continue
        status = cell.metadata.get("papermill", {}).get("status")
        errors = [item for item in cell.get("outputs", []) if item.get("output_type") == "error"]
        if errors or status == "failed":
            entry = {"cell": index, "label": _cell_label(book, index), "status": status}
            if errors:
                entry["error"] = f"{errors[0].get('ename')}: {errors[0].get('evalue')}"
            outcome.failed_cells.append(entry)
            outcome.problems.append(f"{entry['label']} failed: {entry.get('error', status)}")
        elif status == "pending":
            pending.append(_cell_label(book, index))
        for item in cell.get("outputs", []):
            if RESULT_MIME in item.get("data", {}):
                results.append(item["data"][RESULT_MIME])

    # A failed cell already names the exception, the stop of execution and the missing
    # result, so those are reported separately only when no cell explains them.
    explained = [cell["error"] for cell in outcome.failed_cells if cell.get("error")]
    if raised and not any(raised.endswith(error) for error in explained):
        outcome.problems.insert(0, raised)
    if papermill_meta.get("exception") and not outcome.failed_cells:
        outcome.problems.append("the notebook metadata records an exception")
    if pending and not outcome.failed_cells:
        outcome.problems.append(f"{len(pending)} cell(s) never ran, the first being {pending[0]}")
    outcome.effective_parameters = dict(papermill_meta.get("parameters", {}))
    if len(results) != 1:
        if results or not outcome.failed_cells:
            outcome.problems.append(f"the notebook emitted {len(results)} {RESULT_MIME} bundles, expected exactly 1")
    else:
        outcome.result = results[0]
        if outcome.result.get("verdict") != "passed":
            outcome.problems.append(f"the runbook's own verdict is {outcome.result.get('verdict')!r}")
        hits = outcome.result.get("kernel_secret_scan", {}).get("hits")
        if hits:
            outcome.problems.append(f"the kernel found secret values in the notebook: {', '.join(hits)}")

    for name, value in requested.items():
        recorded = outcome.effective_parameters.get(name)
        if recorded != value:
            outcome.problems.append(f"parameter {name!r}: papermill recorded {recorded!r}, requested {value!r}")
        if outcome.result is not None:
            used = outcome.result.get("parameters", {}).get(name)
            if used != value:
                outcome.problems.append(f"parameter {name!r}: the runbook used {used!r}, requested {value!r}")
    return outcome


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the kernel (which inherits them) and restore them afterwards."""
    previous = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

