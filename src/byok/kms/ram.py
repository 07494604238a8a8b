"""Alibaba Cloud RAM (API 2015-05-01) client over aliyun-python-sdk-ram, with typed results.

Covers what least-privilege checks of KMS need: RAM users, their AccessKeys, custom
policies and their attachment to users. Errors surface as ``byok.errors.KmsError`` with
the service's Code, Message, HTTP status and RequestId, exactly as for KMS calls. The
real service is at ``ram.aliyuncs.com``; the byok emulator serves RAM on its KMS endpoint.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from aliyunsdkram.request.v20150501 import (
    AttachPolicyToUserRequest,
    CreateAccessKeyRequest,
    CreatePolicyRequest,
    CreateUserRequest,
    DeleteAccessKeyRequest,
    DeletePolicyRequest,
    DeleteUserRequest,
    DetachPolicyFromUserRequest,
    GetUserRequest,
    ListAccessKeysRequest,
    ListPoliciesForUserRequest,
)

from byok.errors import KmsTransportError
from byok.kms.client import CallRecord, KmsClient
from byok.secrets import Secret

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RamUser:
    user_id: str
    user_name: str
    display_name: str
    create_date: str
    request_id: str


@dataclass(frozen=True)
class RamAccessKey:
    """A new AccessKey; the secret is returned only once, by CreateAccessKey, and stays wrapped."""

    access_key_id: str
    access_key_secret: Secret
    status: str
    create_date: str
    request_id: str


@dataclass(frozen=True)
class AccessKeySummary:
    access_key_id: str
    status: str
    create_date: str


@dataclass(frozen=True)
class RamPolicy:
    policy_name: str
    policy_type: str
    description: str
    default_version: str
    date: str


class RamClient:
    """RAM 2015-05-01 operations, signed with RPC signature v1 like the KMS client."""

    def __init__(
        self,
        *,
        endpoint: str,
        region: str,
        access_key_id: str,
        access_key_secret: Secret,
        timeout_seconds: float = 30.0,
    ) -> None:
        # The KMS client's transport signs any RpcRequest; only the request classes differ.
        self._transport = KmsClient(
            endpoint=endpoint,
            region=region,
            access_key_id=access_key_id,
            access_key_secret=access_key_secret,
            timeout_seconds=timeout_seconds,
        )
        self.endpoint = self._transport.endpoint

    def __repr__(self) -> str:
        return f"RamClient(endpoint={self.endpoint.protocol}://{self.endpoint.host}:{self.endpoint.port})"

    @property
    def calls(self) -> list[CallRecord]:
        return self._transport.calls

    def _call(self, action: str, request: Any) -> dict[str, Any]:
        return self._transport._call(action, request)

    # Users.

    def create_user(self, user_name: str, *, display_name: str = "", comments: str = "") -> RamUser:
        request = CreateUserRequest.CreateUserRequest()
        request.set_UserName(user_name)
        if display_name:
            request.set_DisplayName(display_name)
        if comments:
            request.set_Comments(comments)
        return self._user(self._call("CreateUser", request))

    def get_user(self, user_name: str) -> RamUser:
        request = GetUserRequest.GetUserRequest()
        request.set_UserName(user_name)
        return self._user(self._call("GetUser", request))

    @staticmethod
    def _user(body: dict[str, Any]) -> RamUser:
        user = body.get("User")
        if not isinstance(user, dict):
            raise KmsTransportError(f"RAM response has no User object (fields: {sorted(body)})")
        return RamUser(
            user_id=user.get("UserId", ""),
            user_name=user.get("UserName", ""),
            display_name=user.get("DisplayName", ""),
            create_date=user.get("CreateDate", ""),
            request_id=body.get("RequestId", ""),
        )

    def delete_user(self, user_name: str) -> str:
        request = DeleteUserRequest.DeleteUserRequest()
        request.set_UserName(user_name)
        return self._call("DeleteUser", request).get("RequestId", "")

    # Access keys.

    def create_access_key(self, user_name: str) -> RamAccessKey:
        request = CreateAccessKeyRequest.CreateAccessKeyRequest()
        request.set_UserName(user_name)
        body = self._call("CreateAccessKey", request)
        key = body.get("AccessKey") or {}
        if not key.get("AccessKeyId") or not key.get("AccessKeySecret"):
            raise KmsTransportError("CreateAccessKey response has no AccessKeyId or AccessKeySecret")
        return RamAccessKey(
            access_key_id=key["AccessKeyId"],
            access_key_secret=Secret(key["AccessKeySecret"], f"AccessKey secret of {key['AccessKeyId']}"),
            status=key.get("Status", ""),
            create_date=key.get("CreateDate", ""),
            request_id=body.get("RequestId", ""),
        )

    def delete_access_key(self, user_name: str, access_key_id: str) -> str:
        request = DeleteAccessKeyRequest.DeleteAccessKeyRequest()
        request.set_UserName(user_name)
        request.set_UserAccessKeyId(access_key_id)
        return self._call("DeleteAccessKey", request).get("RequestId", "")

    def list_access_keys(self, user_name: str) -> list[AccessKeySummary]:
        request = ListAccessKeysRequest.ListAccessKeysRequest()
        request.set_UserName(user_name)
        keys = (self._call("ListAccessKeys", request).get("AccessKeys") or {}).get("AccessKey") or []
        return [AccessKeySummary(k.get("AccessKeyId", ""), k.get("Status", ""), k.get("CreateDate", "")) for k in keys]

    # Policies.

    def create_policy(self, policy_name: str, document: dict[str, Any], *, description: str = "") -> RamPolicy:
        request = CreatePolicyRequest.CreatePolicyRequest()
        request.set_PolicyName(policy_name)
        request.set_PolicyDocument(json.dumps(document, separators=(",", ":")))
        if description:
            request.set_Description(description)
        policy = self._call("CreatePolicy", request).get("Policy") or {}
        return RamPolicy(
            policy.get("PolicyName", ""),
            policy.get("PolicyType", ""),
            policy.get("Description", ""),
            policy.get("DefaultVersion", ""),
            policy.get("CreateDate", ""),
        )

    def delete_policy(self, policy_name: str) -> str:
        request = DeletePolicyRequest.DeletePolicyRequest()
        request.set_PolicyName(policy_name)
        return self._call("DeletePolicy", request).get("RequestId", "")

    def attach_policy_to_user(self, user_name: str, policy_name: str, *, policy_type: str = "Custom") -> str:
        request = AttachPolicyToUserRequest.AttachPolicyToUserRequest()
        request.set_UserName(user_name)
        request.set_PolicyName(policy_name)
        request.set_PolicyType(policy_type)
        return self._call("AttachPolicyToUser", request).get("RequestId", "")

    def detach_policy_from_user(self, user_name: str, policy_name: str, *, policy_type: str = "Custom") -> str:
        request = DetachPolicyFromUserRequest.DetachPolicyFromUserRequest()
        request.set_UserName(user_name)
        request.set_PolicyName(policy_name)
        request.set_PolicyType(policy_type)
        return self._call("DetachPolicyFromUser", request).get("RequestId", "")

    def list_policies_for_user(self, user_name: str) -> list[RamPolicy]:
        request = ListPoliciesForUserRequest.ListPoliciesForUserRequest()
        request.set_UserName(user_name)
        policies = (self._call("ListPoliciesForUser", request).get("Policies") or {}).get("Policy") or []
        return [
            RamPolicy(
                p.get("PolicyName", ""), p.get("PolicyType", ""), p.get("Description", ""),
                p.get("DefaultVersion", ""), p.get("AttachDate", ""),
            )
            for p in policies
        ]
