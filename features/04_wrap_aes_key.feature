@epic:BYOK @guide:wrap-key
Feature: Wrap the AES key with the wrapping public key
  C_WrapKey encrypts the AES key under the KMS public key inside the HSM. The mechanism and
  its parameters come from the WrappingAlgorithm named in GetParametersForImport: OAEP with
  the named hash and MGF1 with the same hash, or PKCS#1 v1.5.

  @severity:critical @story:C_WrapKey @control:HSM-03
  Scenario: The HSM wraps the AES key with the mechanism the WrappingAlgorithm names
    Given a CMK with external key material
    And the import parameters for the profile's wrapping algorithm
    And the wrapping public key is on the HSM
    And an AES-256 key generated on the HSM
    When I wrap the AES key with the wrapping public key
    Then the wrapped key is 256 bytes long
    And the wrap used the mechanism the WrappingAlgorithm names
