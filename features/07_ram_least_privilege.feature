@epic:BYOK @guide:ram
Feature: Least-privilege access to the CMK with RAM
  Applications use the CMK through a RAM user whose policy allows only kms:Encrypt and
  kms:Decrypt on the CMK's ARN. Administering the key material stays with the key owner:
  the same user is refused importing material, deleting material and scheduling the
  CMK's deletion, and each refusal names the CMK's ARN.

  Background:
    Given a CMK with imported key material from the HSM
    And a RAM user whose policy allows only kms:Encrypt and kms:Decrypt on the CMK

  @severity:critical @story:RAM-Least-Privilege @control:RAM-01
  Scenario: The least-privilege RAM user encrypts and decrypts with the CMK
    Then the RAM user encrypts "payment card data key" with the CMK and decrypts it again

  @severity:critical @story:RAM-Least-Privilege @control:RAM-01
  Scenario Outline: The least-privilege RAM user is refused key administration
    Then the RAM user is refused <action> on the CMK with Forbidden.NoPermission naming the CMK's ARN
    And the CMK is in state "Enabled"

    Examples:
      | action              |
      | ImportKeyMaterial   |
      | DeleteKeyMaterial   |
      | ScheduleKeyDeletion |
