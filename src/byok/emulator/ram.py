"""RAM API 2015-05-01 actions served on the emulator's endpoint, routed by ``Version``.

Parameter names and response shapes follow the RAM API reference and the request classes
of aliyun-python-sdk-ram 3.3.1. Only what least-privilege tests of KMS need is modelled:
users, their AccessKeys, custom policies and user attachments. A RAM user calling these
actions needs ``ram:<Action>`` permission on the user or policy ARN.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping

from byok.emulator import errors
from byok.emulator.calls import CallContext, Handler, choice, format_time, required
from byok.emulator.clock import EmulatedClock
from byok.emulator.errors import ApiError
from byok.emulator.policy import MalformedPolicy, parse_policy_document
from byok.emulator.store_ram import RamConflict, RamPolicy, RamStore, RamUser

logger = logging.getLogger(__name__)

# Name rules of the RAM API reference (CreateUser, CreatePolicy).
_USER_NAME = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
_POLICY_NAME = re.compile(r"^[A-Za-z0-9-]{1,128}$")
MAX_DISPLAY_NAME_LENGTH = 128
MAX_COMMENTS_LENGTH = 128
MAX_POLICY_DOCUMENT_BYTES = 6144
POLICY_TYPES = ("System", "Custom")

# RAM error codes with their HTTP statuses and messages.
# NOTE: the statuses and the message texts are inferred; the codes are RAM's.
_RAM_ERRORS = {
    "EntityNotExist.User": (404, "The user does not exist."),
    "EntityAlreadyExists.User": (409, "The user already exists."),
    "EntityNotExist.Policy": (404, "The policy does not exist."),
    "EntityAlreadyExists.Policy": (409, "The policy already exists."),
    "EntityNotExist.User.AccessKey": (404, "The access key does not exist."),
    "EntityNotExist.User.Policy": (404, "The policy is not attached to the user."),
    "EntityAlreadyExists.User.Policy": (409, "The policy is already attached to the user."),
    "DeleteConflict.User.AccessKey": (409, "The user has access keys; delete them first."),
    "DeleteConflict.User.Policy": (409, "The user has attached policies; detach them first."),
    "DeleteConflict.Policy.User": (409, "The policy is attached to users; detach it first."),
    "LimitExceeded.User.AccessKey": (409, "The user already has the maximum of 2 access keys."),
}


def ram_error(code: str) -> ApiError:
    status, message = _RAM_ERRORS[code]
    return ApiError(code, status, message)


def malformed_policy(reason: str) -> ApiError:
    return ApiError("MalformedPolicyDocument", 400, f"The policy document is malformed: {reason}.")


def _user_name(params: Mapping[str, str]) -> str:
    name = required(params, "UserName")
    if not _USER_NAME.match(name):
        raise errors.invalid_parameter("UserName")
    return name


def _policy_name(params: Mapping[str, str]) -> str:
    name = required(params, "PolicyName")
    if not _POLICY_NAME.match(name):
        raise errors.invalid_parameter("PolicyName")
    return name


def _bounded(params: Mapping[str, str], name: str, maximum: int) -> str:
    value = params.get(name, "")
    if len(value) > maximum:
        raise errors.invalid_parameter(name)
    return value


# The RAM 2015-05-01 actions the emulator serves, for validating names given elsewhere.
RAM_ACTION_NAMES = frozenset(
    {
        "CreateUser",
        "GetUser",
        "DeleteUser",
        "CreateAccessKey",
        "DeleteAccessKey",
        "ListAccessKeys",
        "CreatePolicy",
        "DeletePolicy",
        "AttachPolicyToUser",
        "DetachPolicyFromUser",
        "ListPoliciesForUser",
    }
)


class RamHandlers:
    """The RAM action handlers of one emulator process."""

    def __init__(self, ram_store: RamStore, clock: EmulatedClock) -> None:
        self._ram = ram_store
        self._clock = clock
        self.actions: dict[str, Handler] = {
            "CreateUser": self.create_user,
            "GetUser": self.get_user,
            "DeleteUser": self.delete_user,
            "CreateAccessKey": self.create_access_key,
            "DeleteAccessKey": self.delete_access_key,
            "ListAccessKeys": self.list_access_keys,
            "CreatePolicy": self.create_policy,
            "DeletePolicy": self.delete_policy,
            "AttachPolicyToUser": self.attach_policy_to_user,
            "DetachPolicyFromUser": self.detach_policy_from_user,
            "ListPoliciesForUser": self.list_policies_for_user,
        }

    @staticmethod
    def _user_arn(context: CallContext, user_name: str) -> str:
        return f"acs:ram::{context.account_id}:user/{user_name}"

    @staticmethod
    def _policy_arn(context: CallContext, policy_name: str) -> str:
        return f"acs:ram::{context.account_id}:policy/{policy_name}"

    def _existing_user(self, context: CallContext, user_name: str) -> RamUser:
        user = self._ram.get_user(context.account_id, user_name)
        if user is None:
            raise ram_error("EntityNotExist.User")
        return user

    def create_user(self, context: CallContext, params: Mapping[str, str]) -> dict:
        user_name = _user_name(params)
        display_name = _bounded(params, "DisplayName", MAX_DISPLAY_NAME_LENGTH)
        comments = _bounded(params, "Comments", MAX_COMMENTS_LENGTH)
        context.authorize(self._user_arn(context, user_name))
        now = self._clock.now()
        # RAM user ids are 16-digit decimal numbers.
        user = RamUser(
            user_name=user_name,
            user_id=str(secrets.randbelow(9 * 10**15) + 10**15),
            display_name=display_name,
            mobile_phone=params.get("MobilePhone", ""),
            email=params.get("Email", ""),
            comments=comments,
            create_date=now,
            update_date=now,
        )
        try:
            self._ram.create_user(context.account_id, user)
        except RamConflict as conflict:
            raise ram_error(conflict.code) from None
        logger.info("created RAM user %s [RequestId %s]", user_name, context.request_id)
        return {"User": self._user_fields(user)}

    @staticmethod
    def _user_fields(user: RamUser) -> dict:
        return {
            "UserId": user.user_id,
            "UserName": user.user_name,
            "DisplayName": user.display_name,
            "MobilePhone": user.mobile_phone,
            "Email": user.email,
            "Comments": user.comments,
            "CreateDate": format_time(user.create_date),
        }

    def get_user(self, context: CallContext, params: Mapping[str, str]) -> dict:
        user_name = _user_name(params)
        context.authorize(self._user_arn(context, user_name))
        user = self._existing_user(context, user_name)
        return {
            "User": {
                **self._user_fields(user),
                "UpdateDate": format_time(user.update_date),
                "LastLoginDate": "",
            }
        }

    def delete_user(self, context: CallContext, params: Mapping[str, str]) -> dict:
        user_name = _user_name(params)
        context.authorize(self._user_arn(context, user_name))
        try:
            self._ram.delete_user(context.account_id, user_name)
        except RamConflict as conflict:
            raise ram_error(conflict.code) from None
        logger.info("deleted RAM user %s [RequestId %s]", user_name, context.request_id)
        return {}

    def create_access_key(self, context: CallContext, params: Mapping[str, str]) -> dict:
        if not params.get("UserName"):
            # The real API creates a key for the caller when UserName is missing.
            raise errors.unsupported_by_emulator("The byok emulator creates AccessKeys for RAM users only; pass UserName.")
        user_name = _user_name(params)
        context.authorize(self._user_arn(context, user_name))
        now = self._clock.now()
        try:
            access_key_id, secret_value = self._ram.create_access_key(context.account_id, user_name, now)
        except RamConflict as conflict:
            raise ram_error(conflict.code) from None
        return {
            "AccessKey": {
                "AccessKeyId": access_key_id,
                "AccessKeySecret": secret_value,
                "Status": "Active",
                "CreateDate": format_time(now),
            }
        }

    def delete_access_key(self, context: CallContext, params: Mapping[str, str]) -> dict:
        access_key_id = required(params, "UserAccessKeyId")
        user_name = _user_name(params)
        context.authorize(self._user_arn(context, user_name))
        try:
            self._ram.delete_access_key(context.account_id, user_name, access_key_id)
        except RamConflict as conflict:
            raise ram_error(conflict.code) from None
        return {}

    def list_access_keys(self, context: CallContext, params: Mapping[str, str]) -> dict:
        user_name = _user_name(params)
        context.authorize(self._user_arn(context, user_name))
        self._existing_user(context, user_name)
        keys = self._ram.list_access_keys(context.account_id, user_name)
        return {
            "AccessKeys": {
                "AccessKey": [
                    {"AccessKeyId": key.access_key_id, "Status": key.status, "CreateDate": format_time(key.create_date)}
                    for key in keys
                ]
            }
        }

    def create_policy(self, context: CallContext, params: Mapping[str, str]) -> dict:
        policy_name = _policy_name(params)
        document = required(params, "PolicyDocument")
        description = _bounded(params, "Description", 1024)
        if len(document.encode("utf-8")) > MAX_POLICY_DOCUMENT_BYTES:
            raise malformed_policy(f"it is longer than {MAX_POLICY_DOCUMENT_BYTES} bytes")
        try:
            parse_policy_document(document)
        except MalformedPolicy as error:
            raise malformed_policy(str(error)) from None
        context.authorize(self._policy_arn(context, policy_name))
        now = self._clock.now()
        try:
            self._ram.create_policy(context.account_id, RamPolicy(policy_name, document, description, now))
        except RamConflict as conflict:
            raise ram_error(conflict.code) from None
        logger.info("created RAM policy %s [RequestId %s]", policy_name, context.request_id)
        return {
            "Policy": {
                "PolicyName": policy_name,
                "PolicyType": "Custom",
                "Description": description,
                "DefaultVersion": "v1",
                "CreateDate": format_time(now),
            }
        }

    def delete_policy(self, context: CallContext, params: Mapping[str, str]) -> dict:
        policy_name = _policy_name(params)
        context.authorize(self._policy_arn(context, policy_name))
        try:
            self._ram.delete_policy(context.account_id, policy_name)
        except RamConflict as conflict:
            raise ram_error(conflict.code) from None
        return {}

    def _attachment_arguments(self, context: CallContext, params: Mapping[str, str]) -> tuple[str, str]:
        policy_type = required(params, "PolicyType")
        choice(params, "PolicyType", POLICY_TYPES, "Custom")
        policy_name = _policy_name(params)
        user_name = _user_name(params)
        context.authorize(self._user_arn(context, user_name), self._policy_arn(context, policy_name))
        if policy_type == "System":
            # NOTE: no system policies are modelled, so every System policy is unknown.
            raise ram_error("EntityNotExist.Policy")
        return user_name, policy_name

    def attach_policy_to_user(self, context: CallContext, params: Mapping[str, str]) -> dict:
        user_name, policy_name = self._attachment_arguments(context, params)
        try:
            self._ram.attach(context.account_id, user_name, policy_name, self._clock.now())
        except RamConflict as conflict:
            raise ram_error(conflict.code) from None
        logger.info("attached RAM policy %s to %s [RequestId %s]", policy_name, user_name, context.request_id)
        return {}

    def detach_policy_from_user(self, context: CallContext, params: Mapping[str, str]) -> dict:
        user_name, policy_name = self._attachment_arguments(context, params)
        try:
            self._ram.detach(context.account_id, user_name, policy_name)
        except RamConflict as conflict:
            raise ram_error(conflict.code) from None
        return {}

    def list_policies_for_user(self, context: CallContext, params: Mapping[str, str]) -> dict:
        user_name = _user_name(params)
        context.authorize(self._user_arn(context, user_name))
        self._existing_user(context, user_name)
        return {
            "Policies": {
                "Policy": [
                    {
                        "PolicyName": attachment.policy_name,
                        "PolicyType": attachment.policy_type,
                        "Description": attachment.description,
                        "DefaultVersion": "v1",
                        "AttachDate": format_time(attachment.attach_date),
                    }
                    for attachment in self._ram.list_attachments(context.account_id, user_name)
                ]
            }
        }
