@epic:BYOK @guide:create-cmk
Feature: Create a CMK with external key material and download the import parameters
  The guide starts in KMS: a customer master key is created with key material origin
  EXTERNAL, so it holds no material and waits in state PendingImport. GetParametersForImport
  then hands out an RSA-2048 wrapping public key and an import token that is valid for
  24 hours and may only be used for the CMK named in the request.

  @severity:critical @story:CreateKey @control:CMK-01
  Scenario: A CMK with external key material waits for its material
    When I create a CMK with key material origin EXTERNAL
    Then the CMK is in state "PendingImport"
    And the CMK has origin "EXTERNAL" and key spec "Aliyun_AES_256"

  @severity:critical @story:GetParametersForImport @control:CMK-02
  Scenario: The import parameters are an RSA-2048 public key and a token valid for 24 hours
    Given a CMK with external key material
    When I download the import parameters for the profile's wrapping algorithm
    Then the wrapping public key is an RSA-2048 SubjectPublicKeyInfo with exponent 65537
    And the import token expires 24 hours after it was issued
    And the import token is bound to the CMK

  @severity:normal @story:GetParametersForImport @control:CMK-03
  Scenario Outline: Import parameters for each wrapping algorithm KMS offers
    Given a CMK with external key material
    When I download the import parameters for wrapping algorithm "<algorithm>"
    Then the wrapping public key is an RSA-2048 SubjectPublicKeyInfo with exponent 65537
    And the import token expires 24 hours after it was issued
    And the import token is bound to wrapping algorithm "<algorithm>"

    Examples:
      | algorithm          |
      | RSAES_OAEP_SHA_1   |
      | RSAES_OAEP_SHA_256 |
      | RSAES_PKCS1_V1_5   |
