"""Identity: Okta token validation, the development issuer, group-to-level
mapping and the permission cache. No HTTP and no database here."""
