@epic:BYOK @guide:generate-aes-key
Feature: Generate the AES-256 key in the HSM
  The key material is generated inside the HSM and never exists in clear outside it. The key
  is a token object, because it is the only copy of the material and a later re-import needs
  it; it is sensitive, and extractable only so that it can leave the HSM wrapped.

  @severity:critical @story:AES-key-attributes @control:HSM-02
  Scenario: The AES key is a sensitive 256-bit token key generated on the HSM
    When I generate an AES-256 key on the HSM
    Then the AES key has the attributes
      | attribute             | value           |
      | CKA_VALUE_LEN         | 32              |
      | CKA_TOKEN             | true            |
      | CKA_PRIVATE           | true            |
      | CKA_SENSITIVE         | true            |
      | CKA_EXTRACTABLE       | true            |
      | CKA_LOCAL             | true            |
      | CKA_ALWAYS_SENSITIVE  | true            |
      | CKA_NEVER_EXTRACTABLE | false           |
    And the AES key was generated with CKM_AES_KEY_GEN where the token records it
    And reading CKA_VALUE of the AES key is refused with CKR_ATTRIBUTE_SENSITIVE
