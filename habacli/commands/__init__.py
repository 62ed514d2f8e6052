"""One module per command (or command group). Each has ``register(app)``; none imports torch at top level."""
