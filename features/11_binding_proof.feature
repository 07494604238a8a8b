@epic:BYOK @guide:encrypt-decrypt
Feature: Binding proof: KMS holds exactly the HSM's key
  An Encrypt and Decrypt round trip shows the CMK works, not that it holds the key the
  HSM generated. Decrypting the CMK's CiphertextBlob on the HSM with the AES key does: the
  blob is the 36-byte key version id, the 12-byte IV, the AES-GCM ciphertext and the
  16-byte tag, with the canonical EncryptionContext as additional authenticated data.
  The byok emulator uses this layout, so there the proof is a verdict. Alibaba does not
  document the real service's layout, so against it the result is recorded as
  informational and never fails the run.

  Background:
    Given a CMK with imported key material from the HSM

  @severity:critical @story:BindingProof @control:BIND-01
  Scenario: The HSM decrypts what the CMK encrypted
    When I encrypt "binding proof" with the CMK
    Then the HSM decrypts the CiphertextBlob with the AES key to "binding proof"

  @severity:normal @story:BindingProof @control:BIND-02
  Scenario: The HSM decrypts what the CMK encrypted with an encryption context
    When I encrypt "binding proof with context" with the CMK and the encryption context
      | key         | value        |
      | application | byok-certify |
      | purpose     | binding      |
    Then the HSM decrypts the CiphertextBlob with the AES key to "binding proof with context"

  @live-only @severity:minor @story:BindingProof @control:BIND-03
  Scenario: Against the real service the binding proof is informational
    When I encrypt "binding proof against the real service" with the CMK
    Then the HSM decrypts the CiphertextBlob with the AES key to "binding proof against the real service"
