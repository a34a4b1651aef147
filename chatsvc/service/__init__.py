"""The use cases: what REST and WebSocket ask chatsvc to do (send a message,
update a session, add a collaborator, authenticate a token). Each loads what it
needs, applies the policy, changes the store and publishes the event."""
