"""Project provisioning: certificates and startup kits (built by the security issue)."""
