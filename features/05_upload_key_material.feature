@epic:BYOK @guide:upload-key-material
Feature: Upload the key material
  ImportKeyMaterial sends the base64 of the wrapped key with the import token and an expiry
  for the material. KMS unwraps it with the algorithm bound to the token and the CMK moves
  from PendingImport to Enabled. byok only calls the import a success when the call
  succeeded, DescribeKey shows Enabled and an Encrypt/Decrypt round trip returns the
  plaintext.

  @severity:blocker @story:ImportKeyMaterial @control:KMS-01
  Scenario: Importing the wrapped AES key enables the CMK
    Given a CMK with external key material
    And the import parameters for the profile's wrapping algorithm
    And the wrapping public key is on the HSM
    And an AES-256 key generated on the HSM
    And the AES key wrapped with the wrapping public key
    When I upload the wrapped key material with an expiry 30 days from now
    Then the CMK is in state "Enabled"
    And the CMK reports the material expiry that was requested
    And an Encrypt and Decrypt round trip with the CMK returns the plaintext
