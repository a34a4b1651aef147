"""Real-time delivery: the broker (cross-process events), the hub (local sockets)
and the WebSocket protocol."""
