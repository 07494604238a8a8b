"""Rules for the parameters of the shipped runbooks, in one table.

papermill infers only a type from a parameters cell. This table adds what it cannot
express: required values, allowed values, lower bounds and folders on the operator's
machine. The runner checks it before anything is executed, so a bad value ends the
command with exit status 2 and no CMK, HSM object or bundle folder is created. The
``Runbook`` in the kernel checks it again, for notebooks run without ``byok``.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from byok.profile import WRAPPING_ALGORITHMS
from byok.runbook.runner import RunbookUsageError


@dataclass(frozen=True)
class ParameterRule:
    """Constraints on one runbook parameter beyond its declared type, and the fix to print when one fails."""

    fix: str
    required: bool = False
    # Allowed values. The empty string is also accepted and means "from the profile".
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    # The value names a folder, and a relative path is read from the operator's working directory.
    folder: bool = False
    # A file the folder must contain.
    folder_contains: str | None = None


_WRAPPING_ALGORITHM = ParameterRule(
    fix=f"use one of {', '.join(sorted(WRAPPING_ALGORITHMS))}, or leave it empty for the profile's kms.wrapping_algorithm",
    choices=tuple(sorted(WRAPPING_ALGORITHMS)),
)
_MATERIAL_EXPIRY_DAYS = ParameterRule(
    fix="pass 0 for key material that never expires, or a positive number of days",
    minimum=0,
)

# Keyed by the notebook's file name without .ipynb, which is also the name a Runbook is given.
RUNBOOK_PARAMETERS: dict[str, dict[str, ParameterRule]] = {
    "import_key_material": {
        "wrapping_algorithm": _WRAPPING_ALGORITHM,
        "material_expiry_days": _MATERIAL_EXPIRY_DAYS,
    },
    "reimport_key_material": {
        "previous_bundle": ParameterRule(
            fix="pass -p previous_bundle DIR, the bundle folder 'byok import' wrote for this CMK",
            required=True,
            folder=True,
            folder_contains="evidence.json",
        ),
        "wrapping_algorithm": _WRAPPING_ALGORITHM,
        "material_expiry_days": _MATERIAL_EXPIRY_DAYS,
    },
    "verify_cmk": {
        "existing_key_id": ParameterRule(
            fix="pass -p existing_key_id KEY_ID, the KeyId of the CMK to verify",
            required=True,
        ),
    },
}


def declared_default(declaration: dict[str, Any]) -> Any:
    """Return the default of a parameter as papermill.inspect_notebook reports it, or None if it is not a literal."""
    try:
        return ast.literal_eval(declaration.get("default") or "None")
    except (ValueError, SyntaxError):
        return None


def check_parameters(
    runbook: str,
    values: dict[str, Any],
    *,
    declared: dict[str, dict[str, Any]] | None = None,
    base: Path | None = None,
) -> dict[str, Any]:
    """Check ``values`` against the rules of ``runbook`` and return them with folders as absolute paths.

    ``values`` are the parameters passed. ``declared`` (papermill's view of the parameters
    cell) limits the check to the parameters the notebook declares and provides the defaults
    of those not passed. Without it every rule applies and ``values`` must be complete, as in
    the kernel. Relative folders are resolved against ``base`` (default: the current
    directory). Raises RunbookUsageError naming the parameter, its value and the fix.
    """
    rules = RUNBOOK_PARAMETERS.get(runbook, {})
    checked = dict(values)
    for name, rule in rules.items():
        if declared is not None and name not in declared:
            continue
        if name in values:
            value = values[name]
        elif declared is not None:
            value = declared_default(declared[name])
        else:
            value = None
        if value in (None, ""):
            if rule.required:
                raise RunbookUsageError(f"parameter {name!r} is missing, and {runbook}.ipynb requires it", fix=rule.fix)
            continue
        checked_value = _check_value(runbook, name, value, rule, base)
        if name in values:
            checked[name] = checked_value
    return checked


def _check_value(runbook: str, name: str, value: Any, rule: ParameterRule, base: Path | None) -> Any:
    if rule.choices and value not in rule.choices:
        raise RunbookUsageError(f"parameter {name!r} = {value!r} is invalid in {runbook}.ipynb", fix=rule.fix)
    if rule.minimum is not None:
        if not isinstance(value, int | float) or not math.isfinite(value) or value < rule.minimum:
            raise RunbookUsageError(
                f"parameter {name!r} = {value!r} is not a finite number of at least {rule.minimum:g}", fix=rule.fix
            )
    if rule.folder:
        return _check_folder(name, str(value), rule, base)
    return value


def _check_folder(name: str, value: str, rule: ParameterRule, base: Path | None) -> str:
    start = base if base is not None else Path.cwd()
    folder = (start / Path(value).expanduser()).resolve()
    relative_note = "" if Path(value).expanduser().is_absolute() else f" (relative paths are read from {start})"
    if not folder.is_dir():
        raise RunbookUsageError(
            f"parameter {name!r} = {value!r}: folder {folder} does not exist{relative_note}", fix=rule.fix
        )
    if rule.folder_contains and not (folder / rule.folder_contains).is_file():
        raise RunbookUsageError(
            f"parameter {name!r} = {value!r}: folder {folder} has no {rule.folder_contains}{relative_note}", fix=rule.fix
        )
    return str(folder)


__all__ = ["RUNBOOK_PARAMETERS", "ParameterRule", "check_parameters", "declared_default"]
