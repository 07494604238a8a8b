"""Bind every scenario under features/ to pytest; ``byok certify`` runs this module."""

from pytest_bdd import scenarios

scenarios(".")
