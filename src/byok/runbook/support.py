"""What the runbook cells call: open the profile's HSM and KMS, run guide steps, record the ceremony.

A ``Runbook`` lives in the notebook kernel. Every output of a cell is saved in the executed
notebook, so the secrets it handles (PIN, AccessKey secret, import token, wrapped blob,
round-trip plaintexts and ciphertexts) stay inside the kernel. Its methods return only
summaries that are safe to display. Each step updates the ceremony
record file the runner named, so a run that stops half way still leaves its evidence.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets as _random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from byok import flow
from byok.errors import ByokError, ConfigError, HsmError, KmsError
from byok.evidence import ceremony
from byok.evidence.leaks import scan_bytes
from byok.evidence.records import PASSED, StepRecord, sha256_hex
from byok.profile import Profile, load_profile
from byok.runbook import (
    EMULATOR_READY_ENV,
    EVIDENCE_ENV,
    OUTPUT_NOTEBOOK_ENV,
    RESULT_MIME,
    RUN_ID_ENV,
)
from byok.runbook.parameters import check_parameters
from byok.secrets import load_secret, register_secret_value, state_dir

logger = logging.getLogger(__name__)

# The CiphertextBlob layout of the byok emulator: a 36-character key version id, a
# 12-byte IV, then the AES-256-GCM ciphertext and its 16-byte tag.
EMULATOR_KEY_VERSION_ID_BYTES = 36
EMULATOR_IV_BYTES = 12
CIPHERTEXT_STORE = "ciphertexts"


class Runbook:
    """One runbook run in the kernel: the open HSM session, the KMS client and the ceremony record."""

    def __init__(self, name: str, parameters: dict[str, Any]) -> None:
        # byok's runner checked these before execution. This check covers a notebook run by hand.
        check_parameters(name, parameters)
        self.name = name
        self.parameters = dict(parameters)
        self.run_id = os.environ.get(RUN_ID_ENV) or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.state_dir = state_dir()
        self.evidence_path = Path(os.environ[EVIDENCE_ENV]) if os.environ.get(EVIDENCE_ENV) else None
        self.record = ceremony.new_record()
        self.verdicts: list[dict[str, str]] = []
        self._stack = contextlib.ExitStack()
        self.profile: Profile | None = None
        self.hsm_session = None
        self.kms = None
        self.key_id: str | None = None
        self._import_parameters = None
        self._public_key = None
        self._wrapped: bytes | None = None
        self._wrapping_label: str | None = None
        self._aes_label: str | None = None

    # -- opening -------------------------------------------------------------------------

    def open(self) -> dict[str, Any]:
        """Load the profile, log in to its token and connect to its KMS endpoint."""
        from byok.hsm import Hsm, init_token, resolve_pin

        self.profile = load_profile(self.parameters.get("profile") or None)
        hsm_settings = self.profile.hsm
        if hsm_settings.family == "softhsm" and hsm_settings.managed:
            init_token(hsm_settings, self.state_dir)
        hsm = Hsm.open(hsm_settings, self.state_dir)
        info = hsm.token_info()
        pin = resolve_pin(hsm_settings, self.state_dir)
        self.hsm_session = self._stack.enter_context(hsm.session(pin))
        self.kms, principal = self._open_kms()
        self.record["people"] = ceremony.declared_people(
            self.parameters.get("operator", ""),
            self.parameters.get("approver", ""),
            list(self.parameters.get("witnesses") or []),
        )
        self.record["hsm"] = {
            "manufacturer": info.manufacturer_id,
            "model": info.model,
            "serial_number": info.serial_number,
            "firmware_version": info.firmware_version,
            "hardware_version": info.hardware_version,
            "token_label": info.label,
            "library": f"{info.library_description} {info.library_version} ({info.library_manufacturer})",
            "cryptoki_version": info.cryptoki_version,
            "fips": {
                "state": self.profile.fips,
                "source": "declared by the profile; byok reads FIPS policies only from Luna partitions",
            },
        }
        self.record["kms"] = {
            "endpoint": "byok KMS emulator" if self.profile.kms.uses_emulator else self.profile.kms.endpoint,
            "region": self.profile.kms.region,
            "calling_principal": principal,
        }
        self._save()
        return {
            "profile": self.profile.name,
            "token": info.label,
            "token serial": info.serial_number,
            "KMS": self.record["kms"]["endpoint"],
            "calling principal": principal,
        }

    def resolve(self, name: str) -> Any:
        """Return the effective value of a parameter whose empty default means "from the profile"."""
        assert self.profile is not None
        value = self.parameters.get(name)
        if value:
            return value
        defaults = {
            "wrapping_algorithm": self.profile.kms.wrapping_algorithm,
            "aes_key_label": f"{self.profile.hsm.aes_key_label_prefix}-{self.run_id}",
        }
        if name in defaults:
            self.parameters[name] = defaults[name]
            return defaults[name]
        return value

    def _open_kms(self):
        from byok.kms import KmsClient

        assert self.profile is not None
        if self.profile.kms.uses_emulator:
            ready_path = os.environ.get(EMULATOR_READY_ENV)
            if not ready_path or not Path(ready_path).is_file():
                raise ConfigError(
                    f"profile {self.profile.name} uses the KMS emulator, but {EMULATOR_READY_ENV} names no ready file",
                    fix="run the notebook with 'byok import', which starts the emulator and sets the variable",
                )
            ready = json.loads(Path(ready_path).read_text(encoding="utf-8"))
            secret = load_secret("emulator root AccessKey secret", env=None, file=Path(ready["access_key_secret_file"]))
            register_secret_value("AccessKey id", ready["access_key_id"])
            client = KmsClient(
                endpoint=ready["endpoint"],
                region=ready["region"],
                access_key_id=ready["access_key_id"],
                access_key_secret=secret,
            )
            return client, f"root account {ready['account_id']}"
        key_id_env = self.profile.kms.access_key_id_env or ""
        access_key_id = os.environ.get(key_id_env, "")
        if not access_key_id:
            raise ConfigError(
                f"the AccessKey id is not in environment variable {key_id_env}",
                fix=f"export {key_id_env}=... before running the runbook",
            )
        register_secret_value("AccessKey id", access_key_id)
        secret = load_secret("AccessKey secret", env=self.profile.kms.access_key_secret_env, file=None)
        client = KmsClient(
            endpoint=self.profile.kms.endpoint,
            region=self.profile.kms.region,
            access_key_id=access_key_id,
            access_key_secret=secret,
        )
        # NOTE: the principal behind an AccessKey is not looked up (that needs STS
        # GetCallerIdentity), so the record names the variable the key came from.
        return client, f"the RAM identity of the AccessKey in environment variable {key_id_env}"

    # -- step bookkeeping ----------------------------------------------------------------

    def _save(self) -> None:
        if self.evidence_path is not None:
            ceremony.save(self.record, self.evidence_path)

    def _step(self, resource: str, call, *args, hsm_step: bool = False, **kwargs):
        """Run a guide function, record its StepRecord (also when it fails) and return its result."""
        try:
            result = call(*args, **kwargs)
        except flow.CheckFailed as error:
            self._record_step(error.record, resource, hsm_step, None)
            self._record_failure(error, resource)
            raise
        except ByokError as error:
            self._record_failure(error, resource)
            raise
        records = [item for item in (result if isinstance(result, tuple) else (result,)) if isinstance(item, StepRecord)]
        for record in records:
            self._record_step(record, resource, hsm_step, "CKR_OK" if hsm_step else None)
        return result

    def _record_step(self, record: StepRecord, resource: str, hsm_step: bool, code: str | None) -> None:
        self.record["steps"].append(ceremony.step_entry(record, resource=resource, pkcs11_return_code=code))
        self.verdicts.append({"step": record.step, "verdict": record.verdict})
        self._save()

    def _record_failure(self, error: ByokError, resource: str) -> None:
        details: dict[str, Any] = {"resource": resource}
        if isinstance(error, HsmError):
            details["pkcs11_return_code"] = error.ckr_name
            details["operation"] = error.operation
        if isinstance(error, KmsError):
            details["kms_request_id"] = error.request_id
            details["kms_error_code"] = error.code
        self.record["exceptions"].append(ceremony.exception_entry("failed step", error.message, **details))
        self.verdicts.append({"step": resource, "verdict": "failed"})
        self._save()

    def _manual_record(self, step: str, section: str, inputs: dict[str, Any]) -> StepRecord:
        return StepRecord(step, section, inputs=inputs)

    # -- KMS key -----------------------------------------------------------------------------

    def create_or_use_key(self, description: str, existing_key_id: str = "") -> dict[str, Any]:
        """Create the external CMK, or check that ``existing_key_id`` waits for key material."""
        assert self.kms is not None and self.profile is not None
        if existing_key_id:
            record = self._manual_record("use_existing_key", flow.guide.SECTION_CREATE_KEY, {"KeyId": existing_key_id})
            described = self._step(f"KMS key {existing_key_id}", self.kms.describe_key, existing_key_id)
            record.observe("DescribeKey RequestId", described.request_id)
            record.observe("KeyState", described.metadata.key_state)
            record.check("Origin", "EXTERNAL", described.metadata.origin)
            record.check("KeyState", "PendingImport", described.metadata.key_state)
            record.finish()
            self._record_step(record, f"KMS key {existing_key_id}", False, None)
            if record.failed_checks():
                raise flow.CheckFailed(
                    f"CMK {existing_key_id} cannot take new key material: "
                    f"Origin {described.metadata.origin}, KeyState {described.metadata.key_state}",
                    record,
                    fix="name a CMK with Origin EXTERNAL in PendingImport, or leave existing_key_id empty",
                )
            key_id = existing_key_id
        else:
            key_id, _record = self._step(
                "KMS key (new)",
                flow.create_external_key,
                self.kms,
                description=description,
                protection_level=self.profile.kms.protection_level,
            )
        self.key_id = key_id
        for step in self.record["steps"]:
            if step["resource"] == "KMS key (new)":
                step["resource"] = f"KMS key {key_id}"
        self._describe_into_record("KeyState before import")
        return {"KeyId": key_id, "KeyState": self.record["kms"].get("KeyState before import")}

    def _describe_into_record(self, state_name: str) -> Any:
        assert self.kms is not None and self.key_id is not None
        metadata = self.kms.describe_key(self.key_id).metadata
        self.record["kms"].update(
            {
                "KeyId": metadata.key_id,
                "Arn": metadata.arn,
                "KeySpec": metadata.key_spec,
                "Origin": metadata.origin,
                "ProtectionLevel": metadata.protection_level,
                state_name: metadata.key_state,
            }
        )
        self._save()
        return metadata

    def create_alias(self, alias: str) -> dict[str, Any]:
        """Point ``alias`` at the CMK; an empty alias is recorded as not requested."""
        assert self.kms is not None and self.key_id is not None
        if not alias:
            self.record["kms"]["alias"] = "not requested"
            self._save()
            return {"alias": "not requested"}
        if not alias.startswith("alias/"):
            raise ConfigError(f"alias {alias!r} does not start with 'alias/'", fix="use a name such as alias/payments")
        record = self._manual_record("create_alias", "Name the CMK", {"AliasName": alias, "KeyId": self.key_id})
        request_id = self._step(f"KMS alias {alias}", self.kms.create_alias, alias, self.key_id)
        record.observe("CreateAlias RequestId", request_id)
        self._record_step(record.finish(PASSED), f"KMS alias {alias}", False, None)
        self.record["kms"]["alias"] = alias
        self._save()
        return {"alias": alias, "RequestId": request_id}

    # -- import parameters and wrapping ------------------------------------------------------------

    def get_import_parameters(self, wrapping_algorithm: str) -> dict[str, Any]:
        """Download a fresh wrapping public key and import token for the CMK."""
        assert self.kms is not None and self.profile is not None and self.key_id is not None
        spec = self.profile.kms.wrapping_key_spec
        parameters, public_key, _record = self._step(
            f"KMS key {self.key_id}",
            flow.get_import_parameters,
            self.kms,
            self.key_id,
            wrapping_algorithm=wrapping_algorithm,
            wrapping_key_spec=spec,
        )
        self._import_parameters = parameters
        self._public_key = public_key
        token = parameters.import_token.reveal()
        self.record["wrapping"] = {
            "public key SHA-256 fingerprint (DER SubjectPublicKeyInfo)": public_key.fingerprint_sha256,
            **ceremony.wrapping_verdict(wrapping_algorithm, spec),
        }
        self.record["import"] = {
            "ImportToken SHA-256": sha256_hex(token),
            "ImportToken length": len(token),
            "TokenExpireTime": parameters.token_expire_time,
        }
        self._save()
        return {
            "WrappingAlgorithm": wrapping_algorithm,
            "public key SHA-256": public_key.fingerprint_sha256,
            "TokenExpireTime": parameters.token_expire_time,
            "verdict": self.record["wrapping"]["verdict"],
        }

    def import_wrapping_public_key(self) -> dict[str, Any]:
        """Create the KMS wrapping public key on the token as a session object with CKA_WRAP."""
        assert self.profile is not None and self._public_key is not None
        label = f"byok-wrap-{self.run_id}-{_random.token_hex(2)}"
        self._step(
            f"HSM object {label}",
            flow.import_wrapping_public_key,
            self.hsm_session,
            self._public_key,
            label=label,
            wrap_attribute=self.profile.hsm.wrap_attribute,
            token_object=self.profile.hsm.public_key_token_object,
            hsm_step=True,
        )
        self._wrapping_label = label
        return {"CKA_LABEL": label, "CKA_WRAP": True}

    def generate_aes_key(self, label: str) -> dict[str, Any]:
        """Generate the AES-256 token key; a label already on the token is rejected before any call."""
        if not label:
            raise ConfigError("aes_key_label is empty", fix="name the AES key, for example -p aes_key_label payments-2026")
        existing = self.hsm_session.find_objects(label, "CKO_SECRET_KEY")
        if existing:
            raise ConfigError(
                f"the token already contains a secret key labelled {label!r}",
                fix="choose a new aes_key_label, or re-import that key with 'byok reimport'",
            )
        key_id, _record = self._step(
            f"HSM object {label}", flow.generate_aes_key, self.hsm_session, label=label, hsm_step=True
        )
        self._aes_label = label
        self._record_aes_key(label)
        return {"CKA_LABEL": label, "CKA_ID": key_id.hex(), "key check value": self.record["aes_key"]["key check value"]}

    def _record_aes_key(self, label: str) -> None:
        from byok.hsm.session import AES_KEY_READBACK

        attributes = self.hsm_session.read_attributes(label, "CKO_SECRET_KEY", AES_KEY_READBACK)
        check_value = attributes.get("CKA_CHECK_VALUE")
        self.record["aes_key"] = {
            "label": label,
            "CKA_ID": attributes.get("CKA_ID"),
            "attributes": attributes,
            "key check value": check_value or "not available",
            "key check value method": (
                "CKA_CHECK_VALUE as read from the token (PKCS#11 2.40: the first 3 bytes of the "
                "AES encryption of an all-zero block, computed inside the HSM)"
                if check_value
                else "not available: the token offers no CKA_CHECK_VALUE, and byok never computes one outside the HSM"
            ),
            "C_GetAttributeValue(CKA_VALUE)": "CKR_ATTRIBUTE_SENSITIVE",
        }
        self._save()

    def wrap_aes_key(self, wrapping_algorithm: str) -> dict[str, Any]:
        """Wrap the AES key under the KMS public key; the blob stays in the kernel."""
        assert self._wrapping_label is not None and self._aes_label is not None
        wrapped, _record = self._step(
            f"HSM object {self._aes_label}",
            flow.wrap_aes_key,
            self.hsm_session,
            wrapping_key_label=self._wrapping_label,
            aes_key_label=self._aes_label,
            wrapping_algorithm=wrapping_algorithm,
            hsm_step=True,
        )
        # Registered so the scan of the executed notebook catches any copy of the blob.
        register_secret_value("wrapped key material (base64)", base64.b64encode(wrapped).decode("ascii"))
        register_secret_value("wrapped key material (hex)", wrapped.hex())
        self._wrapped = wrapped
        self.record["import"].update({"wrapped blob SHA-256": sha256_hex(wrapped), "wrapped blob length (bytes)": len(wrapped)})
        self._save()
        return {"wrapped blob length (bytes)": len(wrapped), "wrapped blob SHA-256": sha256_hex(wrapped)}

    def import_key_material(self, material_expiry_days: float) -> dict[str, Any]:
        """Upload the wrapped key with the requested expiry and prove the import."""
        assert self.kms is not None and self.key_id is not None
        if self._wrapped is None or self._import_parameters is None:
            raise ConfigError("no wrapped key to upload", fix="run the wrap step first")
        expire_unix = flow.material_expiry(float(material_expiry_days) * 24, now=self.kms.server_now())
        self._step(
            f"KMS key {self.key_id}",
            flow.import_key_material,
            self.kms,
            self.key_id,
            wrapped_key=self._wrapped,
            parameters=self._import_parameters,
            material_expire_unix=expire_unix,
        )
        metadata = self._describe_into_record("KeyState after import")
        asked = (
            datetime.fromtimestamp(expire_unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if expire_unix else "never"
        )
        self.record["kms"]["MaterialExpireTime asked"] = asked
        self.record["kms"]["MaterialExpireTime reported"] = metadata.material_expire_time or "never"
        self._save()
        return {
            "KeyState": metadata.key_state,
            "MaterialExpireTime asked": asked,
            "MaterialExpireTime reported": metadata.material_expire_time or "never",
        }

    # -- checks ------------------------------------------------------------------------------------

    def round_trip(self, *, keep_reference: bool) -> dict[str, Any]:
        """Encrypt a random plaintext and decrypt it; optionally keep the ciphertext for a later re-import."""
        assert self.kms is not None and self.key_id is not None
        plaintext = f"byok ceremony {self.run_id} {_random.token_hex(16)}"
        register_secret_value("round-trip plaintext", plaintext)
        blob, _record = self._step(
            f"KMS key {self.key_id}", flow.encrypt_decrypt, self.kms, self.key_id, plaintext=plaintext
        )
        register_secret_value("round-trip ciphertext", blob)
        check: dict[str, Any] = {
            "result": "passed",
            "plaintext SHA-256": sha256_hex(plaintext),
            "ciphertext SHA-256": sha256_hex(blob),
        }
        if keep_reference:
            check["ciphertext reference"] = self._store_ciphertext(blob, plaintext)
        self.record["checks"]["round trip"] = check
        self.record["checks"]["binding proof"] = self._binding_proof(blob, plaintext)
        self._save()
        return {name: self.record["checks"][name]["result"] for name in ("round trip", "binding proof")}

    def _store_ciphertext(self, blob: str, plaintext: str) -> dict[str, Any]:
        """Keep a ciphertext in the state directory (never in the bundle) for the re-import proof."""
        folder = self.state_dir / CIPHERTEXT_STORE / str(self.key_id)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        name = f"{sha256_hex(blob)}.json"
        (folder / name).write_text(
            json.dumps({"key_id": self.key_id, "ciphertext_blob": blob, "plaintext_sha256": sha256_hex(plaintext)}),
            encoding="utf-8",
        )
        return {
            "store": "state directory",
            "path": f"{CIPHERTEXT_STORE}/{self.key_id}/{name}",
            "ciphertext SHA-256": sha256_hex(blob),
            "plaintext SHA-256": sha256_hex(plaintext),
        }

    def _binding_proof(self, blob: str, plaintext: str) -> dict[str, Any]:
        """Decrypt a KMS ciphertext with the HSM's AES key: proof that both hold the same key."""
        assert self.profile is not None
        label = self._aes_label
        decrypt = getattr(self.hsm_session, "decrypt_aes_gcm", None)
        if decrypt is None or not label:
            return {"result": "not available", "reason": "the HSM layer has no AES-GCM decryption or no AES key is named"}
        if not self.profile.kms.uses_emulator:
            # NOTE: Alibaba Cloud does not publish its CiphertextBlob layout, so the proof
            # runs only against the emulator, whose layout byok defines.
            return {"result": "not available", "reason": "the CiphertextBlob layout of the real KMS is not published"}
        raw = base64.b64decode(blob)
        iv = raw[EMULATOR_KEY_VERSION_ID_BYTES : EMULATOR_KEY_VERSION_ID_BYTES + EMULATOR_IV_BYTES]
        body = raw[EMULATOR_KEY_VERSION_ID_BYTES + EMULATOR_IV_BYTES :]
        try:
            recovered = decrypt(label, iv, body).decode("utf-8", errors="replace")
        except HsmError as error:
            return {"result": "failed", "reason": f"C_Decrypt(CKM_AES_GCM) failed: {error.ckr_name}"}
        held = recovered == plaintext
        return {
            "result": "passed" if held else "failed",
            "method": "C_Decrypt(CKM_AES_GCM) on the HSM of the KMS CiphertextBlob",
            "plaintext SHA-256": sha256_hex(plaintext),
            "HSM plaintext SHA-256": sha256_hex(recovered),
            "ciphertext SHA-256": sha256_hex(blob),
        }

    # -- re-import -------------------------------------------------------------------------------

    def load_previous_bundle(self, folder: str) -> dict[str, Any]:
        """Verify the earlier bundle and read what the re-import must match from its evidence.json."""
        from byok.evidence.manifest import MANIFEST_NAME, file_sha256
        from byok.evidence.verify import verify_bundle

        path = Path(folder)
        if not (path / ceremony.EVIDENCE_NAME).is_file():
            raise ConfigError(
                f"previous_bundle {folder} has no {ceremony.EVIDENCE_NAME}",
                fix="name the folder 'byok import' wrote for this CMK",
            )
        # NOTE: only the bundle's own report-signer.pem is a trust anchor here, so a bundle
        # that a witness co-signed fails this check, because no parameter passes --trust.
        verification = verify_bundle(path)
        if not verification.intact:
            changed = verification.manifest.problems() if verification.manifest else []
            raise ConfigError(
                f"previous_bundle {folder} does not verify: {verification.verdict()}"
                + "".join(f"; {problem}" for problem in changed),
                fix="use the original, unchanged bundle folder",
            )
        earlier = ceremony.load(path / ceremony.EVIDENCE_NAME)
        self.previous = earlier
        self.record["previous_bundle"] = {
            "SHA256SUMS SHA-256": file_sha256(path / MANIFEST_NAME),
            "run id": earlier.get("run", {}).get("id"),
            "KeyId": earlier.get("kms", {}).get("KeyId"),
            "AES key label": earlier.get("aes_key", {}).get("label"),
            "signers": [signer.subject for signer in verification.signers],
        }
        self._save()
        return self.record["previous_bundle"]

    def find_aes_key(self, label: str) -> dict[str, Any]:
        """Find the AES key by label and check it is the key of the earlier bundle."""
        earlier = getattr(self, "previous", {})
        label = label or earlier.get("aes_key", {}).get("label", "")
        self._aes_label = label
        self._record_aes_key(label)
        record = self._manual_record("find_aes_key", "Find the AES key of the earlier import", {"CKA_LABEL": label})
        record.check("token serial as in the earlier bundle", earlier.get("hsm", {}).get("serial_number"), self.record["hsm"]["serial_number"])
        record.check("CKA_ID as in the earlier bundle", earlier.get("aes_key", {}).get("CKA_ID"), self.record["aes_key"]["CKA_ID"])
        record.check(
            "key check value as in the earlier bundle",
            earlier.get("aes_key", {}).get("key check value"),
            self.record["aes_key"]["key check value"],
        )
        record.finish()
        self._record_step(record, f"HSM object {label}", True, "CKR_OK")
        self.record["checks"]["same key as the earlier bundle"] = {
            "result": record.verdict,
            "compared": [entry["check"] for entry in record.checks],
        }
        self._save()
        if record.failed_checks():
            raise flow.CheckFailed(
                f"the AES key {label!r} is not the key of the earlier bundle: "
                + "; ".join(f"{c['check']}: expected {c['expected']!r}, got {c['actual']!r}" for c in record.failed_checks()),
                record,
                fix="name the token and label the earlier import used",
            )
        return {"CKA_LABEL": label, "CKA_ID": self.record["aes_key"]["CKA_ID"], "same key": True}

    def use_previous_key(self, existing_key_id: str) -> dict[str, Any]:
        """Select the CMK of the earlier bundle and check that it lost its material."""
        assert self.kms is not None
        earlier = getattr(self, "previous", {})
        self.key_id = existing_key_id or earlier.get("kms", {}).get("KeyId")
        if not self.key_id:
            raise ConfigError("no CMK to re-import into", fix="pass -p existing_key_id KEY_ID or a previous_bundle")
        metadata = self._describe_into_record("KeyState before import")
        record = self._manual_record("check_key_lost_material", flow.guide.SECTION_CREATE_KEY, {"KeyId": self.key_id})
        record.observe("KeyState", metadata.key_state)
        record.check("KeyState before re-import", "PendingImport", metadata.key_state)
        record.finish()
        self._record_step(record, f"KMS key {self.key_id}", False, None)
        if record.failed_checks():
            raise flow.CheckFailed(
                f"CMK {self.key_id} is {metadata.key_state}, so it needs no re-import",
                record,
                fix="re-import only after the material expired or was deleted (KeyState PendingImport)",
            )
        return {"KeyId": self.key_id, "KeyState": metadata.key_state}

    def decrypt_earlier_ciphertext(self) -> dict[str, Any]:
        """Decrypt the ciphertext the earlier import kept and compare the plaintext hash."""
        assert self.kms is not None
        earlier = getattr(self, "previous", {})
        reference = earlier.get("checks", {}).get("round trip", {}).get("ciphertext reference")
        if not reference:
            self.record["checks"]["earlier ciphertext"] = {"result": "not available", "reason": "the earlier bundle kept no ciphertext reference"}
            self._save()
            return self.record["checks"]["earlier ciphertext"]
        stored = json.loads((self.state_dir / reference["path"]).read_text(encoding="utf-8"))
        blob = stored["ciphertext_blob"]
        register_secret_value("earlier ciphertext", blob)
        record = self._manual_record("decrypt_earlier_ciphertext", flow.guide.SECTION_USE_KEY, {"ciphertext SHA-256": reference["ciphertext SHA-256"]})
        record.check("stored ciphertext SHA-256", reference["ciphertext SHA-256"], sha256_hex(blob))
        decrypted = self._step(f"KMS key {self.key_id}", self.kms.decrypt, blob)
        register_secret_value("earlier plaintext", decrypted.plaintext)
        record.observe("Decrypt RequestId", decrypted.request_id)
        record.check("plaintext SHA-256 as in the earlier bundle", reference["plaintext SHA-256"], sha256_hex(decrypted.plaintext))
        record.finish()
        self._record_step(record, f"KMS key {self.key_id}", False, None)
        self.record["checks"]["earlier ciphertext"] = {
            "result": record.verdict,
            "ciphertext SHA-256": reference["ciphertext SHA-256"],
            "plaintext SHA-256": sha256_hex(decrypted.plaintext),
        }
        self._save()
        if record.failed_checks():
            raise flow.CheckFailed("a ciphertext made before the re-import does not decrypt to its plaintext", record)
        return {"result": record.verdict}

    # -- verify only -------------------------------------------------------------------------------

    def describe_for_verification(self, key_id: str, aes_key_label: str) -> dict[str, Any]:
        assert self.kms is not None
        if not key_id:
            raise ConfigError("existing_key_id is empty", fix="pass -p existing_key_id KEY_ID")
        self.key_id = key_id
        self._aes_label = aes_key_label or None
        if aes_key_label:
            self._record_aes_key(aes_key_label)
        metadata = self._describe_into_record("KeyState")
        record = self._manual_record("describe_key", "Check the CMK", {"KeyId": key_id})
        record.observe("KeyState", metadata.key_state)
        record.observe("MaterialExpireTime", metadata.material_expire_time or "never")
        record.check("KeyState", "Enabled", metadata.key_state)
        record.finish()
        self._record_step(record, f"KMS key {key_id}", False, None)
        if record.failed_checks():
            raise flow.CheckFailed(f"CMK {key_id} is {metadata.key_state}, not Enabled", record)
        return {"KeyId": key_id, "KeyState": metadata.key_state, "MaterialExpireTime": metadata.material_expire_time or "never"}

    # -- result ------------------------------------------------------------------------------------

    def result(self) -> dict[str, Any]:
        """Close the HSM session, scan the saved notebook for this kernel's secrets and return the result."""
        self._stack.close()
        scan = self._scan_saved_notebook()
        failed_checks = [name for name, check in self.record["checks"].items() if check.get("result") == "failed"]
        passed = (
            all(entry["verdict"] == PASSED for entry in self.verdicts)
            and not failed_checks
            and not scan.get("hits")
            and bool(self.verdicts)
        )
        return {
            "runbook": self.name,
            "run_id": self.run_id,
            "parameters": self.parameters,
            "steps": self.verdicts,
            "checks": {name: check.get("result") for name, check in self.record["checks"].items()},
            "kernel_secret_scan": scan,
            "key_id": self.key_id,
            "verdict": "passed" if passed else "failed",
        }

    def _scan_saved_notebook(self) -> dict[str, Any]:
        """Scan the notebook papermill saved after the previous cell for secrets that only this kernel has loaded.

        The runner cannot see the import token, the wrapped blob or the round-trip data,
        so the kernel checks the saved notebook itself before the result is emitted.
        """
        path = os.environ.get(OUTPUT_NOTEBOOK_ENV)
        if not path or not Path(path).is_file():
            return {"scanned": "nothing", "reason": "no saved notebook named", "hits": []}
        from byok.secrets import known_secret_values

        table = known_secret_values()
        hits = scan_bytes(Path(path).read_bytes(), where=Path(path).name, secrets=table)
        return {
            "scanned": Path(path).name,
            "secrets": sorted(set(table.values())),
            "hits": [f"{hit.secret_name} ({hit.encoding})" for hit in hits],
        }

    def emit_result(self) -> dict[str, Any]:
        """Display the result as the one ``application/vnd.byok.result+json`` bundle the runner reads."""
        from IPython.display import display

        result = self.result()
        display({RESULT_MIME: result, "text/plain": json.dumps(result, indent=2, default=str)}, raw=True)
        return result
