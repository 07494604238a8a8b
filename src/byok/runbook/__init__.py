"""Operator runbooks: papermill execution with an explicit kernel (``runner``) and the
helpers the notebook cells call (``support``)."""

RESULT_MIME = "application/vnd.byok.result+json"

# Environment variables the runner sets for the notebook kernel. None of them contains a
# secret: the kernel reads the PIN and the AccessKey secret itself, from the files and
# variables the profile names.
EMULATOR_READY_ENV = "BYOK_EMULATOR_READY"
EVIDENCE_ENV = "BYOK_RUNBOOK_EVIDENCE"
OUTPUT_NOTEBOOK_ENV = "BYOK_RUNBOOK_OUTPUT_NOTEBOOK"
RUN_ID_ENV = "BYOK_RUN_ID"

__all__ = ["EMULATOR_READY_ENV", "EVIDENCE_ENV", "OUTPUT_NOTEBOOK_ENV", "RESULT_MIME", "RUN_ID_ENV"]
