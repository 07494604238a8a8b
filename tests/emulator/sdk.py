"""One calling convention over the three ways the official SDKs sign KMS requests.

``OldSdkClient`` drives aliyun-python-sdk-kms (RPC signature v1, all parameters in the
query); ``TeaSdkClient`` drives alibabacloud-kms20160120 with ACS3-HMAC-SHA256 (default)
or with ``signature_algorithm="v2"`` (RPC signature v1). Both raise ``KmsCallFailed``
with the code, HTTP status and message the SDK surfaced.
"""

from __future__ import annotations

import importlib
import json
import re
from typing import Any

from alibabacloud_kms20160120 import models as tea_models
from alibabacloud_kms20160120.client import Client as TeaClient
from alibabacloud_tea_openapi.exceptions import AlibabaCloudException
from alibabacloud_tea_openapi.utils_models import Config
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from darabonba.runtime import RuntimeOptions

from byok.emulator.process import EmulatorProcess

SDK_MODES = ("old-sdk", "tea-acs3", "tea-v2")


class KmsCallFailed(Exception):
    def __init__(self, code: str, http_status: int, message: str, request_id: str | None) -> None:
        super().__init__(f"{code} (HTTP {http_status}): {message}")
        self.code = code
        self.http_status = http_status
        self.message = message
        self.request_id = request_id


def _snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class OldSdkClient:
    """aliyun-python-sdk-kms over plain HTTP to 127.0.0.1 (endpoint override (a))."""

    def __init__(self, emulator: EmulatorProcess, *, access_key_id: str | None = None, secret: str | None = None) -> None:
        self._client = AcsClient(
            access_key_id or emulator.access_key_id,
            secret if secret is not None else emulator.access_key_secret().reveal(),
            emulator.region,
            port=emulator.port,
            auto_retry=False,
        )

    def call(self, action: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        # Hidden from pytest reports because params may hold an import token.
        __tracebackhide__ = True
        module = importlib.import_module(f"aliyunsdkkms.request.v20160120.{action}Request")
        request = getattr(module, f"{action}Request")()
        request.set_endpoint("127.0.0.1")
        request.set_protocol_type("http")
        for name, value in (params or {}).items():
            if isinstance(value, dict):
                value = json.dumps(value)
            getattr(request, f"set_{name}")(value)
        try:
            return json.loads(self._client.do_action_with_exception(request))
        except ServerException as error:
            raise KmsCallFailed(
                error.get_error_code(), error.get_http_status(), error.get_error_msg(), error.get_request_id()
            ) from None


class TeaSdkClient:
    """alibabacloud-kms20160120 with ``protocol="http"`` and the emulator as endpoint."""

    def __init__(
        self,
        emulator: EmulatorProcess,
        *,
        signature_algorithm: str | None = None,
        access_key_id: str | None = None,
        secret: str | None = None,
    ) -> None:
        config = Config(
            access_key_id=access_key_id or emulator.access_key_id,
            access_key_secret=secret if secret is not None else emulator.access_key_secret().reveal(),
            region_id=emulator.region,
            endpoint=f"127.0.0.1:{emulator.port}",
            protocol="http",
        )
        if signature_algorithm is not None:
            config.signature_algorithm = signature_algorithm
        self._client = TeaClient(config)

    def call(self, action: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        __tracebackhide__ = True
        method = getattr(self._client, f"{_snake_case(action)}_with_options")
        request_class = getattr(tea_models, f"{action}Request", None)
        # Actions without parameters (DescribeRegions) have no request model.
        arguments = []
        if request_class is not None:
            arguments.append(request_class(**{_snake_case(name): value for name, value in (params or {}).items()}))
        try:
            response = method(*arguments, RuntimeOptions(autoretry=False))
        except AlibabaCloudException as error:
            # error.message is "code: <status>, <Message> request id: <id>"; the body keeps Message.
            body = error.data or {}
            raise KmsCallFailed(error.code, error.status_code, body.get("Message", error.message), error.request_id) from None
        return response.body.to_map()


def make_client(mode: str, emulator: EmulatorProcess, **credentials: str) -> OldSdkClient | TeaSdkClient:
    if mode == "old-sdk":
        return OldSdkClient(emulator, **credentials)
    if mode == "tea-acs3":
        return TeaSdkClient(emulator, **credentials)
    if mode == "tea-v2":
        return TeaSdkClient(emulator, signature_algorithm="v2", **credentials)
    raise ValueError(f"unknown SDK mode {mode!r}")
