@epic:BYOK @guide:partition-readiness
Feature: Partition readiness
  Before any key is created, the HSM partition (the PKCS#11 token) must be the one the
  profile names, initialised, and usable by the user. byok records whether the token works
  in FIPS mode and how that is known, and which mechanisms the import needs, before any KMS
  call.

  @severity:blocker @story:token @control:HSM-10
  Scenario: The token is found by its label and the user can log in
    Given the token named in the profile
    Then the token is initialised
    And the user PIN of the token is set
    And the user can log in to the token

  @severity:critical @story:FIPS-mode @control:HSM-11
  Scenario: The FIPS mode of the token is known and recorded
    Given the capability negotiation of the run
    Then the FIPS mode of the token is known and recorded as evidence

  @severity:critical @story:mechanisms @control:HSM-12
  Scenario: The mechanisms the import needs are recorded before any KMS call
    Given the capability negotiation of the run
    Then the mechanism inventory of the token is recorded as evidence
    And every wrapping algorithm was tried with a throw-away wrap of session keys
    And raw RSA (CKM_RSA_X_509) is not used for wrapping

  @severity:critical @story:FIPS-mode @control:HSM-13
  Scenario: In FIPS mode PKCS#1 v1.5 key transport is refused before any HSM call
    Given the capability negotiation of the run
    And the token is in FIPS mode
    Then wrapping with RSAES_PKCS1_V1_5 is refused before any HSM call
    And C_GetMechanismList lacks CKM_RSA_PKCS where the token removes it in FIPS mode
