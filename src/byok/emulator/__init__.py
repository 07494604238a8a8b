"""Local Alibaba Cloud KMS (API 2016-01-20) emulator for the byok harness.

A real HTTP server on 127.0.0.1 that checks request signatures and serves the key
import actions, so the official Python SDKs run against it unchanged. Start it with
``byok emulator serve`` or, from tests, with ``byok.emulator.process.EmulatorProcess``.
"""
