"""The sans-IO core: protocol messages, token frames, verifiers and policy.

Nothing in this package opens a socket, reads a clock or draws randomness: time and random bytes
are passed in by the adapters, so every rule here is a pure function or a small state machine.
"""
