"""Fixtures of the web adapter's tests: a fresh copy of the test site for every test, its store,
the in-memory backend over them, the app, and a TestClient on https (see ``web_support``)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from web_support import (
    BASE_URL,
    PUBLIC_URL,
    MemoryBackend,
    TestClient,
    create_test_site,
    scratch_directory,
)

from smartlock import admin, crypto
from smartlock.adapters.web.app import create_app
from smartlock.site import Site


@pytest.fixture(scope="session")
def site_template() -> Iterator[Path]:
    """Provisioned once (keys, certificates, broker files take a second); copied per test."""
    with scratch_directory() as directory:
        yield create_test_site(directory / "template").root


@pytest.fixture
def site(site_template: Path) -> Iterator[Site]:
    """A fresh copy of the test site: each test has its own store and files."""
    with scratch_directory() as directory:
        shutil.copytree(site_template, directory / "site")
        yield Site.load(directory / "site")


@pytest.fixture
def backend(site: Site) -> Iterator[MemoryBackend]:
    with admin.open_store(site) as store:
        yield MemoryBackend(site, store)


@pytest.fixture
def app(backend: MemoryBackend) -> FastAPI:
    return create_app(backend, public_url=PUBLIC_URL)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url=BASE_URL, follow_redirects=False) as test_client:
        yield test_client


@pytest.fixture
def new_client(app: FastAPI) -> Iterator[Callable[[], TestClient]]:
    """Another browser on the same app (its own cookie jar)."""
    clients: list[TestClient] = []

    def make() -> TestClient:
        test_client = TestClient(app, base_url=BASE_URL, follow_redirects=False)
        clients.append(test_client.__enter__())
        return test_client

    yield make
    for test_client in clients:
        test_client.__exit__(None, None, None)


@pytest.fixture(scope="session")
def device_public_pem() -> str:
    """A guest device's own RSA public key (made once: key generation is slow)."""
    return crypto.public_key_to_pem(crypto.generate_private_key().public_key()).decode()
