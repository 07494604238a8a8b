@epic:BYOK @guide:hsm-controls
Feature: HSM negative controls
  The token itself must stop the misuse of keys, whatever a client asks. Each scenario asks
  the token for something it must refuse and checks the exact PKCS#11 return value, and that
  the key is unchanged afterwards. The keys here are session objects that disappear when the
  scenario ends.

  @severity:critical @story:CKA_WRAP @control:HSM-14
  Scenario: A public key without CKA_WRAP cannot wrap
    Given an RSA public key on the HSM with CKA_WRAP false
    And an extractable AES-256 session key on the HSM
    When I try to wrap the AES key with that public key
    Then the token refuses with CKR_KEY_FUNCTION_NOT_PERMITTED

  @severity:critical @story:CKA_EXTRACTABLE @control:HSM-15
  Scenario: A non-extractable AES key cannot be wrapped
    Given an RSA public key on the HSM with CKA_WRAP true
    And a non-extractable AES-256 session key on the HSM
    When I try to wrap the AES key with that public key
    Then the token refuses with CKR_KEY_UNEXTRACTABLE

  @severity:critical @story:attribute-latches @control:HSM-16
  Scenario: CKA_SENSITIVE cannot be cleared
    Given an extractable AES-256 session key on the HSM
    When I try to set CKA_SENSITIVE of the AES key to false
    Then the token refuses with CKR_ATTRIBUTE_READ_ONLY
    And the AES key still reads CKA_SENSITIVE true

  @severity:critical @story:attribute-latches @control:HSM-16
  Scenario: CKA_EXTRACTABLE cannot be set once it is false
    Given a non-extractable AES-256 session key on the HSM
    When I try to set CKA_EXTRACTABLE of the AES key to true
    Then the token refuses with CKR_ATTRIBUTE_READ_ONLY
    And the AES key still reads CKA_EXTRACTABLE false

  @severity:critical @story:CKA_VALUE @control:HSM-17
  Scenario: The value of the AES key cannot be read
    Given an extractable AES-256 session key on the HSM
    When I try to read CKA_VALUE of the AES key
    Then the token refuses with CKR_ATTRIBUTE_SENSITIVE

  @severity:critical @story:key-separation @control:HSM-18
  Scenario: No key can both wrap and decrypt, and the KMS private key is not on the token
    Given a CMK with external key material
    And the import parameters for the profile's wrapping algorithm
    And the wrapping public key is on the HSM
    And an AES-256 key generated on the HSM
    Then no object visible in the session has both CKA_WRAP and CKA_DECRYPT true
    And no private key on the token has the modulus of the KMS wrapping public key

  @severity:normal @story:call-evidence @control:HSM-19
  Scenario: The PKCS#11 wrap call is traced with its mechanism parameters
    Given the capability negotiation of the run
    When I trace a throw-away wrap with the profile's wrapping algorithm through pkcs11-spy
    Then the trace shows C_WrapKey with the mechanism and parameters of the wrapping algorithm
    And the trace excerpt attached to the report contains no PIN
