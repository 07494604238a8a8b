@epic:BYOK @guide:import-public-key
Feature: Import the wrapping public key into the HSM
  The HSM can only wrap the AES key under the KMS public key once that key exists on the
  partition as a PKCS#11 public-key object that is allowed to wrap (CKA_WRAP true). Tokens
  disagree on the default, so the attribute is set explicitly and read back.

  @severity:critical @story:CKA_WRAP @control:HSM-01
  Scenario: The wrapping public key is a PKCS#11 object allowed to wrap
    Given a CMK with external key material
    And the import parameters for the profile's wrapping algorithm
    When I import the wrapping public key into the HSM
    Then the public key object has CKA_WRAP true
    And the public key object has CKA_ENCRYPT true
    And the public key object is a 2048-bit RSA key
    And the public key object is a session object
