"""Steps for the guide's RAM section: a least-privilege RAM user for the CMK.

The RAM user, its policy and its AccessKey are made per scenario and removed when the
scenario ends, pass or fail. The AccessKey secret lives only inside ``RamPrincipal`` as a
``Secret``, so no step argument or report entry can show it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pytest_bdd import given, parsers, then

from byok.errors import ConfigError, KmsError
from byok.flow import ram as ram_flow
from byok.kms import KmsClient
from byok.kms.ram import RamClient
from byok.profile import Profile
from byok.secrets import load_secret
from steps.context import Cmk
from steps.kms_steps import run_step

logger = logging.getLogger(__name__)

# The public RAM endpoint; RAM is a global service without regional endpoints.
RAM_ENDPOINT = "ram.aliyuncs.com"


@dataclass
class RamUserContext:
    """The RAM user as later steps use it: names and a KMS client, never the secret itself."""

    user_name: str
    key_id: str
    key_arn: str
    user_kms: KmsClient = field(repr=False)


@pytest.fixture
def ram(profile: Profile, emulator: dict | None) -> RamClient:
    """Return a RAM client with the key owner's AccessKey: the emulator's root key, or the profile's."""
    if emulator is not None:
        secret = load_secret("emulator root AccessKey secret", env=None, file=Path(emulator["access_key_secret_file"]))
        return RamClient(
            endpoint=emulator["endpoint"], region=emulator["region"], access_key_id=emulator["access_key_id"], access_key_secret=secret
        )
    key_id_env = profile.kms.access_key_id_env or ""
    access_key_id = os.environ.get(key_id_env, "")
    if not access_key_id:
        raise ConfigError(
            f"the AccessKey id is not in environment variable {key_id_env}",
            fix=f"export {key_id_env}=... before running the RAM scenarios",
        )
    secret = load_secret("AccessKey secret", env=profile.kms.access_key_secret_env, file=None)
    return RamClient(endpoint=RAM_ENDPOINT, region=profile.kms.region, access_key_id=access_key_id, access_key_secret=secret)


@given("a RAM user whose policy allows only kms:Encrypt and kms:Decrypt on the CMK", target_fixture="ram_user")
def least_privilege_user(kms, ram: RamClient, cmk: Cmk, run_id: str, evidence, request: pytest.FixtureRequest) -> RamUserContext:
    key_arn = kms.describe_key(cmk.key_id).metadata.arn
    # RAM user names allow letters, digits and . _ @ -, at most 64 characters.
    user_name = f"byok-{run_id}-{os.urandom(3).hex()}"[:64].replace(":", "-")
    principal, _ = run_step(evidence, ram_flow.create_least_privilege_user, ram, user_name=user_name, key_arn=key_arn)

    def remove() -> None:
        try:
            evidence(ram_flow.remove_user(ram, principal))
        except (KmsError, ram_flow.CheckFailed) as error:
            logger.error("could not remove RAM user %s: %s", principal.user_name, error)
            raise

    request.addfinalizer(remove)
    endpoint = f"{kms.endpoint.protocol}://{kms.endpoint.host}:{kms.endpoint.port}"
    return RamUserContext(principal.user_name, cmk.key_id, key_arn, principal.kms_client(endpoint, kms.region))


@then(parsers.parse('the RAM user encrypts "{plaintext}" with the CMK and decrypts it again'))
def ram_user_round_trip(ram_user: RamUserContext, evidence, plaintext: str) -> None:
    run_step(evidence, ram_flow.use_key_as_user, ram_user.user_kms, key_id=ram_user.key_id, plaintext=plaintext)


@then(parsers.parse("the RAM user is refused {action} on the CMK with Forbidden.NoPermission naming the CMK's ARN"))
def ram_user_refused(kms, ram_user: RamUserContext, evidence, action: str) -> None:
    run_step(
        evidence,
        ram_flow.expect_refused,
        ram_user.user_kms,
        kms,
        action=action,
        key_id=ram_user.key_id,
        key_arn=ram_user.key_arn,
    )
