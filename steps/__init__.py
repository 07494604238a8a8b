"""pytest-bdd step definitions, by domain. Steps only call byok.flow, byok.kms and byok.hsm."""
