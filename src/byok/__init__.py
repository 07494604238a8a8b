"""byok: certify, perform and document the import of HSM-generated AES-256 keys into Alibaba Cloud KMS."""

__version__ = "0.1.0"
