"""chatsvc: a chat service whose REST routes and WebSockets are guarded by Okta permissions."""

__version__ = "0.1.0"
