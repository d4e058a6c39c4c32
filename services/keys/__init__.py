"""careloop's own signing keys (SMART client assertions) and their JWKS."""
