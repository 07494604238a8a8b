@epic:BYOK @guide:wrap-key
Feature: Preconditions checked before any key material reaches KMS
  Aliyun_AES_256 needs exactly 32 bytes of key material. A key generated with the wrong
  length, for example 16 bytes because "128" or "256" was read as the wrong unit, wraps
  without complaint and would only be caught by KMS. byok checks the HSM object's
  CKA_VALUE_LEN before the wrap and stops with the expected and actual length in bytes and
  bits, so no ImportKeyMaterial call is made.

  @negative @severity:critical @story:KeyLength @control:PRE-01
  Scenario: An AES key of the wrong length never reaches ImportKeyMaterial
    Given a CMK with external key material
    And the import parameters for the profile's wrapping algorithm
    And the wrapping public key is on the HSM
    And an AES key of 16 bytes generated on the HSM by mistake
    When I try to wrap and upload the AES key
    Then the pre-flight check stops it with "is 16 bytes (128 bits), but Aliyun_AES_256 needs exactly 32 bytes (256 bits)"
    And no ImportKeyMaterial call was made
    And the CMK is in state "PendingImport"
