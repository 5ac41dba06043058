"""smartlock: a secure smart-lock access system (backend, lock agent, guest app)."""

__version__ = "0.1.0"
