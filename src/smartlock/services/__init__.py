"""Async orchestration of the core and the adapters: the backend, the lock agent, the guest app.

Services hold glue only: every decision is made by :mod:`smartlock.core`.
"""
