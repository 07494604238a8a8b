"""The guide's RAM section: a least-privilege RAM user that may only encrypt and decrypt with the CMK.

The guide grants applications ``kms:Encrypt`` and ``kms:Decrypt`` on the CMK's ARN and
nothing else, so key administration (import, material deletion, deletion scheduling)
stays with the key owner. These functions create that user, use it, prove the refusals
and remove it again; each returns a ``StepRecord``. The user's AccessKey secret exists
only as a ``byok.secrets.Secret``, which keeps it out of reprs, logs and reports and
registers it for the leak scan.
"""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from byok.errors import KmsError
from byok.evidence import PASSED, StepRecord
from byok.flow.guide import CheckFailed, _fail_unless_passed
from byok.kms import KmsClient
from byok.kms.ram import RamClient
from byok.secrets import Secret

logger = logging.getLogger(__name__)

SECTION_RAM = "Grant applications least-privilege access with RAM"
LEAST_PRIVILEGE_ACTIONS = ("kms:Encrypt", "kms:Decrypt")
NO_PERMISSION_CODE = "Forbidden.NoPermission"
NO_PERMISSION_STATUS = 403


@dataclass
class RamPrincipal:
    """A RAM user made for one run, with its policy and AccessKey; the secret never shows in repr."""

    user_name: str
    policy_name: str
    access_key_id: str
    access_key_secret: Secret = field(repr=False)

    def kms_client(self, endpoint: str, region: str) -> KmsClient:
        return KmsClient(
            endpoint=endpoint, region=region, access_key_id=self.access_key_id, access_key_secret=self.access_key_secret
        )


def least_privilege_policy(key_arn: str) -> dict:
    """Return the RAM policy document that allows only Encrypt and Decrypt on one CMK."""
    return {
        "Version": "1",
        "Statement": [{"Effect": "Allow", "Action": list(LEAST_PRIVILEGE_ACTIONS), "Resource": [key_arn]}],
    }


def create_least_privilege_user(ram: RamClient, *, user_name: str, key_arn: str) -> tuple[RamPrincipal, StepRecord]:
    """Create a RAM user, a policy allowing only kms:Encrypt and kms:Decrypt on ``key_arn``, attach it and issue an AccessKey."""
    policy_name = f"{user_name}-encrypt-decrypt"
    document = least_privilege_policy(key_arn)
    record = StepRecord(
        "create_least_privilege_user",
        SECTION_RAM,
        inputs={"UserName": user_name, "PolicyName": policy_name, "PolicyDocument": document},
    )
    user = ram.create_user(user_name, comments="byok least-privilege check")
    record.observe("CreateUser RequestId", user.request_id)
    record.observe("UserId", user.user_id)
    policy = ram.create_policy(policy_name, document, description="kms:Encrypt and kms:Decrypt on one CMK")
    record.check("PolicyType", "Custom", policy.policy_type)
    record.observe("AttachPolicyToUser RequestId", ram.attach_policy_to_user(user_name, policy_name))
    access_key = ram.create_access_key(user_name)
    record.observe("AccessKeyId", access_key.access_key_id)
    record.check("AccessKey status", "Active", access_key.status)

    # Read the attachments back rather than trusting the responses alone.
    attached = [(p.policy_name, p.policy_type) for p in ram.list_policies_for_user(user_name)]
    record.observe("policies attached", attached)
    record.check("only the least-privilege policy is attached", [(policy_name, "Custom")], attached)
    principal = RamPrincipal(user_name, policy_name, access_key.access_key_id, access_key.access_key_secret)
    try:
        _fail_unless_passed(record, f"RAM user {user_name} was not set up as the guide requires")
    except CheckFailed:
        remove_user(ram, principal)
        raise
    return principal, record.finish(PASSED)


def use_key_as_user(user_kms: KmsClient, *, key_id: str, plaintext: str) -> StepRecord:
    """Encrypt and decrypt with the CMK using the RAM user's AccessKey."""
    record = StepRecord(
        "use_key_as_ram_user", SECTION_RAM, inputs={"KeyId": key_id, "AccessKeyId": user_kms.access_key_id}
    )
    encrypted = user_kms.encrypt(key_id, plaintext)
    record.observe("Encrypt RequestId", encrypted.request_id)
    decrypted = user_kms.decrypt(encrypted.ciphertext_blob)
    record.observe("Decrypt RequestId", decrypted.request_id)
    record.check("Encrypt KeyId", key_id, encrypted.key_id)
    record.check("Decrypt returns the plaintext", plaintext, decrypted.plaintext)
    _fail_unless_passed(record, f"the RAM user could not use CMK {key_id} as the policy allows")
    return record.finish(PASSED)


def _refused_calls(user_kms: KmsClient, key_id: str) -> dict[str, Callable[[], object]]:
    # Random stand-ins: the request must be well formed so that only the permission
    # check can reject it. They are not key material and not a real import token.
    placeholder_material = base64.b64encode(secrets.token_bytes(256)).decode("ascii")
    placeholder_token = Secret(base64.b64encode(secrets.token_bytes(48)).decode("ascii"), "placeholder import token")
    return {
        "ImportKeyMaterial": lambda: user_kms.import_key_material(
            key_id, encrypted_key_material=placeholder_material, import_token=placeholder_token
        ),
        "DeleteKeyMaterial": lambda: user_kms.delete_key_material(key_id),
        "ScheduleKeyDeletion": lambda: user_kms.schedule_key_deletion(key_id, 7),
    }


REFUSABLE_ACTIONS = ("ImportKeyMaterial", "DeleteKeyMaterial", "ScheduleKeyDeletion")


def expect_refused(user_kms: KmsClient, owner_kms: KmsClient, *, action: str, key_id: str, key_arn: str) -> StepRecord:
    """Call ``action`` on the CMK as the RAM user and check it is refused with Forbidden.NoPermission naming the ARN.

    If the call is wrongly accepted, a ScheduleKeyDeletion is cancelled again with the
    owner's client so the CMK survives the failed check.
    """
    calls = _refused_calls(user_kms, key_id)
    if action not in calls:
        raise ValueError(f"no refusal check for {action!r}; use one of {', '.join(REFUSABLE_ACTIONS)}")
    record = StepRecord(
        "ram_user_refused", SECTION_RAM, inputs={"Action": action, "KeyId": key_id, "AccessKeyId": user_kms.access_key_id}
    )
    try:
        calls[action]()
    except KmsError as error:
        record.observe("RequestId", error.request_id)
        record.observe("Message", error.service_message)
        record.check("error code", NO_PERMISSION_CODE, error.code)
        record.check("HTTP status", NO_PERMISSION_STATUS, error.http_status)
        record.check("message names the CMK's ARN", True, key_arn in error.service_message)
    else:
        record.check(f"{action} refused", NO_PERMISSION_CODE, "accepted")
        if action == "ScheduleKeyDeletion":
            owner_kms.cancel_key_deletion(key_id)
            logger.error("the RAM user scheduled deletion of %s; deletion cancelled again", key_id)
    _fail_unless_passed(
        record,
        f"{action} on {key_id} by the least-privilege RAM user was not refused as required",
        fix="check that the RAM policy grants only kms:Encrypt and kms:Decrypt on the CMK",
    )
    return record.finish(PASSED)


def remove_user(ram: RamClient, principal: RamPrincipal) -> StepRecord:
    """Delete the user's AccessKey, detach and delete its policy, delete the user and confirm it is gone."""
    record = StepRecord(
        "remove_ram_user",
        SECTION_RAM,
        inputs={"UserName": principal.user_name, "PolicyName": principal.policy_name, "AccessKeyId": principal.access_key_id},
    )
    for summary in ram.list_access_keys(principal.user_name):
        ram.delete_access_key(principal.user_name, summary.access_key_id)
    for policy in ram.list_policies_for_user(principal.user_name):
        ram.detach_policy_from_user(principal.user_name, policy.policy_name, policy_type=policy.policy_type)
    ram.delete_policy(principal.policy_name)
    record.observe("DeleteUser RequestId", ram.delete_user(principal.user_name))
    try:
        ram.get_user(principal.user_name)
    except KmsError as error:
        record.check("GetUser after deletion", "EntityNotExist.User", error.code)
    else:
        record.check("GetUser after deletion", "EntityNotExist.User", "user still exists")
    _fail_unless_passed(record, f"RAM user {principal.user_name} was not removed")
    return record.finish(PASSED)
