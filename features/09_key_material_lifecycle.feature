@epic:BYOK @guide:key-material-lifecycle
Feature: Key material lifecycle: expiry, deletion and re-import
  Imported key material can expire or be deleted. The CMK then returns to PendingImport and
  rejects every cryptographic call until material is imported again. Only the material the
  CMK was first bound to is accepted, so a re-import needs the original AES key from the
  HSM, fresh import parameters and a fresh wrap: an import token is valid for 24 hours.

  These scenarios move the KMS clock, so they run against a second emulator whose data
  belongs to this run alone; the real service's clock cannot be moved.

  @lifecycle @emulator-only @severity:critical @story:MaterialExpiry @control:LIFE-01
  Scenario: Expired key material returns the CMK to PendingImport
    Given a CMK on the lifecycle emulator with HSM key material that expires in 1 hour
    When the lifecycle emulator's clock moves forward 2h
    Then the lifecycle CMK is in state "PendingImport"
    And Encrypt with the lifecycle CMK is rejected with "Rejected.PendingImport"

  @lifecycle @emulator-only @severity:critical @story:DeleteKeyMaterial @control:LIFE-02
  Scenario: Deleted key material returns the CMK to PendingImport
    Given a CMK on the lifecycle emulator with HSM key material that never expires
    When I delete the key material of the lifecycle CMK
    Then the lifecycle CMK is in state "PendingImport"
    And Encrypt with the lifecycle CMK is rejected with "Rejected.PendingImport"

  @lifecycle @emulator-only @severity:blocker @story:Reimport @control:LIFE-03
  Scenario: Re-importing the same AES key from the HSM restores the CMK
    Given a CMK on the lifecycle emulator with HSM key material that never expires
    And a ciphertext made with the lifecycle CMK
    When I delete the key material of the lifecycle CMK
    And I re-import the same AES key from the HSM with fresh import parameters
    Then the lifecycle CMK is in state "Enabled"
    And the ciphertext made before decrypts again to "made before the material was deleted"

  @lifecycle @negative @emulator-only @severity:critical @story:Reimport @control:LIFE-04
  Scenario: Different key material is rejected and the CMK stays as it was
    Given a CMK on the lifecycle emulator with HSM key material that never expires
    When I delete the key material of the lifecycle CMK
    Then uploading a different AES key from the HSM is rejected with InvalidKeyMaterial
    And the lifecycle CMK is in state "PendingImport"

  @lifecycle @negative @emulator-only @severity:critical @story:ImportToken @control:LIFE-05
  Scenario: An import token older than 24 hours is rejected
    Given a CMK on the lifecycle emulator with a wrapped AES key ready to upload
    When the lifecycle emulator's clock moves forward 25h
    And I upload the wrapped key material with the import token issued before
    Then the upload was rejected with ExpiredImportToken
    And the lifecycle CMK is in state "PendingImport"

  @lifecycle @negative @emulator-only @severity:critical @story:ImportVerdict @control:LIFE-06
  Scenario: An import whose round trip fails is reported as an inconsistent key state
    Given a CMK on the lifecycle emulator with a wrapped AES key ready to upload
    And the lifecycle emulator answers every Decrypt with InternalFailure
    When I upload the wrapped key material and byok checks the import
    Then the import is reported as an inconsistent key state listing every observation
