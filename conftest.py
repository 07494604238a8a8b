"""pytest wiring shared by the Gherkin suite (``byok certify``) and the library tests.

Fixtures here start what a run needs: the profile, the state directory, the SoftHSM2
token (bootstrapped when the profile manages it), the KMS emulator (when the profile
names it) and a KMS client. Secrets are loaded inside fixtures and never handed to a
step function, because allure-pytest-bdd records step arguments verbatim.
"""

from __future__ import annotations

import os
import secrets as _random
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from byok.errors import ConfigError
from byok.profile import Profile, load_profile
from byok.secrets import Secret, load_secret, register_secret_value
from byok.secrets import state_dir as default_state_dir

pytest_plugins = [
    "steps.kms_steps",
    "steps.hsm_steps",
    "steps.evidence_steps",
    "steps.lifecycle_steps",
    "steps.hsm_controls_steps",
    "steps.ram_steps",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("byok")
    group.addoption(
        "--profile",
        default=os.environ.get("BYOK_PROFILE", "softhsm-emulator"),
        help="profile name from profiles/ or path of a TOML file (default: $BYOK_PROFILE or softhsm-emulator)",
    )
    group.addoption(
        "--run-id",
        default=os.environ.get("BYOK_RUN_ID"),
        help="identifier of this run, used in object labels and report folders (default: generated)",
    )
    group.addoption(
        "--wrapping-algorithm",
        default=None,
        help="WrappingAlgorithm to use instead of the profile's (RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, RSAES_PKCS1_V1_5)",
    )


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + _random.token_hex(3)


@pytest.fixture(scope="session")
def run_id(pytestconfig: pytest.Config) -> str:
    return pytestconfig.getoption("--run-id") or new_run_id()


@pytest.fixture(scope="session")
def profile(pytestconfig: pytest.Config) -> Profile:
    loaded = load_profile(pytestconfig.getoption("--profile"))
    algorithm = pytestconfig.getoption("--wrapping-algorithm")
    if algorithm:
        loaded = loaded.with_wrapping_algorithm(algorithm)
    return loaded


@pytest.fixture(scope="session")
def byok_state_dir() -> Path:
    path = default_state_dir()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


@pytest.fixture(scope="session")
def emulator(profile: Profile, byok_state_dir: Path, run_id: str) -> Iterator[dict | None]:
    """Start the KMS emulator for profiles whose endpoint is ``emulator``; None otherwise."""
    if not profile.kms.uses_emulator:
        yield None
        return
    from byok.emulator.process import EmulatorProcess

    with EmulatorProcess(
        data_dir=byok_state_dir / "emulator",
        secret_file=byok_state_dir / "secrets" / "emulator-root-access-key-secret",
        region=profile.kms.region,
        # An emulator the user started with 'byok emulator serve' keeps its ready.json.
        ready_file=byok_state_dir / "emulator" / f"ready-certify-{run_id}.json",
    ) as process:
        yield process.ready


@pytest.fixture(scope="session")
def kms(profile: Profile, emulator: dict | None):
    from byok.kms import KmsClient

    if emulator is not None:
        secret = load_secret(
            "emulator root AccessKey secret", env=None, file=Path(emulator["access_key_secret_file"])
        )
        # Reports name the principal, never its AccessKey id: scan for the id like a secret.
        register_secret_value("emulator root AccessKey id", emulator["access_key_id"])
        return KmsClient(
            endpoint=emulator["endpoint"],
            region=emulator["region"],
            access_key_id=emulator["access_key_id"],
            access_key_secret=secret,
        )
    key_id_env = profile.kms.access_key_id_env or ""
    access_key_id = os.environ.get(key_id_env, "")
    if not access_key_id:
        raise ConfigError(
            f"the AccessKey id is not in environment variable {key_id_env}",
            fix=f"export {key_id_env}=... before running against {profile.kms.endpoint}",
        )
    secret = load_secret("AccessKey secret", env=profile.kms.access_key_secret_env, file=None)
    register_secret_value("AccessKey id", access_key_id)
    return KmsClient(
        endpoint=profile.kms.endpoint,
        region=profile.kms.region,
        access_key_id=access_key_id,
        access_key_secret=secret,
    )


@pytest.fixture(scope="session")
def hsm(profile: Profile, byok_state_dir: Path):
    from byok.hsm import Hsm
    from byok.hsm.softhsm import init_token

    if profile.hsm.family == "softhsm" and profile.hsm.managed:
        init_token(profile.hsm, byok_state_dir)
    daemon = None
    if profile.hsm.family == "opencryptoki" and profile.hsm.managed:
        # Starts pkcsslotd (stopped by PID below, only if byok started it) and initializes the token.
        from byok.hsm.opencryptoki import prepare_token

        daemon, _ = prepare_token(profile.hsm, byok_state_dir)
    try:
        yield Hsm.open(profile.hsm, byok_state_dir)
    finally:
        if daemon is not None:
            daemon.stop()


@pytest.fixture(scope="session")
def capability(hsm, _hsm_pin: Secret, profile: Profile):
    """Capability negotiation, once per run: steps call ``capability.require()`` before any KMS call."""
    from byok.flow.capability import negotiate

    return negotiate(
        hsm, _hsm_pin, wrapping_algorithm=profile.kms.wrapping_algorithm, profile_fips=profile.fips
    )


@pytest.fixture(scope="session")
def _hsm_pin(profile: Profile, byok_state_dir: Path) -> Secret:
    from byok.hsm.softhsm import resolve_pin

    return resolve_pin(profile.hsm, byok_state_dir)


@pytest.fixture
def hsm_session(hsm, _hsm_pin: Secret, run_objects: RunObjects) -> Iterator:
    """A logged-in session for one scenario; objects of the run it made are removed after it."""
    with hsm.session(_hsm_pin) as session:
        try:
            yield session
        finally:
            run_objects.remove_unkept(session)


class RunObjects:
    """Labels of HSM objects a run created, and which of them the run must keep."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._counter = 0
        self.created: dict[str, str] = {}
        self.kept: set[str] = set()

    def label(self, kind: str) -> str:
        self._counter += 1
        return f"byok-{kind}-{self.run_id}-{self._counter}"

    def created_object(self, label: str, object_class: str) -> None:
        self.created[label] = object_class

    def keep(self, label: str) -> None:
        self.kept.add(label)

    def remove_unkept(self, session) -> None:
        for label, object_class in list(self.created.items()):
            if label in self.kept:
                continue
            session.destroy_objects(label, object_class)
            del self.created[label]


@pytest.fixture(scope="session")
def run_objects(run_id: str) -> RunObjects:
    return RunObjects(run_id)
