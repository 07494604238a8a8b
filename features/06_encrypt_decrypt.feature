@epic:BYOK @guide:encrypt-decrypt
Feature: Use the CMK to encrypt and decrypt
  Once the material is imported, the CMK encrypts and decrypts like any other. The
  ciphertext names the key version, so Decrypt needs no KeyId, and an encryption context
  given to Encrypt must be given again to Decrypt.

  Background:
    Given a CMK with imported key material from the HSM

  @severity:critical @story:Encrypt-Decrypt @control:KMS-02
  Scenario: Data encrypted with the CMK decrypts to the same plaintext
    When I encrypt "payment card data key" with the CMK
    Then decrypting the ciphertext returns "payment card data key"
    And the ciphertext names the CMK's key version

  @severity:normal @story:EncryptionContext @control:KMS-03
  Scenario: An encryption context must be given again to decrypt
    When I encrypt "payment card data key" with the CMK and the encryption context
      | key         | value        |
      | application | byok-certify |
    Then decrypting the ciphertext with the same encryption context returns "payment card data key"
    And decrypting the ciphertext without the encryption context is rejected
