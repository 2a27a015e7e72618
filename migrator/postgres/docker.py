"""The ``docker`` provider: testcontainers ``postgres:<major>`` (optional dependency)."""

from __future__ import annotations

import functools
import importlib
import secrets
from typing import Any

from migrator.errors import ProvisionError
from migrator.postgres.dsn import server_version
from migrator.postgres.server import Server

PING_TIMEOUT_S = 2
NO_DAEMON_REASON = f"no Docker daemon answered within {PING_TIMEOUT_S} s"
DOCKER_MAJORS = range(13, 19)


@functools.cache
def docker_available() -> bool:
    """Whether a Docker daemon answers a ping within ``PING_TIMEOUT_S`` (cached)."""
    try:
        docker: Any = importlib.import_module("docker")
        client = docker.from_env(timeout=PING_TIMEOUT_S)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # noqa: BLE001 - any failure means "no daemon"
        return False


def _container_class() -> Any:
    for name in ("testcontainers.community.postgres", "testcontainers.postgres"):
        try:
            return importlib.import_module(name).PostgresContainer
        except ImportError:
            continue
    raise ProvisionError(
        "The docker provider needs testcontainers, which is not installed.",
        hint="pip install 'langgraph-migrator[docker]', or use --provider local.",
    )


class _Container:
    def __init__(self, container: Any) -> None:
        self._container = container
        self._stopped = False

    def is_running(self) -> bool:
        if self._stopped:
            return False
        try:
            inner = self._container.get_wrapped_container()
            inner.reload()
            return bool(inner.status == "running")
        except Exception:  # noqa: BLE001
            return False

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._container.stop()

    @property
    def container_id(self) -> str | None:
        try:
            return str(self._container.get_wrapped_container().id)
        except Exception:  # noqa: BLE001
            return None


def start_container(major: int) -> Server:
    """Start ``postgres:<major>`` in Docker.

    Args:
        major: Postgres major (image tag).

    Returns:
        A running ``Server`` with provider ``docker`` and no local bin dir.

    Raises:
        ProvisionError: No daemon, testcontainers missing, or the container failed.
    """
    if not docker_available():
        raise ProvisionError(
            f"Docker provider asked for, but {NO_DAEMON_REASON}.",
            hint="start Docker, or use --provider local (ephemeral cluster from binaries).",
        )
    image = f"postgres:{major}"
    container = _container_class()(
        image,
        username="postgres",
        password=secrets.token_hex(12),
        dbname="postgres",
        driver=None,
    )
    try:
        container.start()
        dsn = str(container.get_connection_url())
        got_major, version = server_version(dsn)
    except ProvisionError:
        container.stop()
        raise
    except Exception as exc:
        try:
            container.stop()
        except Exception:  # noqa: BLE001
            pass
        detail = " ".join(str(exc).split())
        raise ProvisionError(
            f"Docker container {image} failed to start: {detail}",
            hint="check `docker run postgres` works and the image can be pulled.",
        ) from exc
    handle = _Container(container)
    return Server(
        dsn=dsn,
        major=got_major,
        version=version,
        bin_dir=None,
        provider="docker",
        source=f"docker {image}",
        _handle=handle,
    )


def remove_container(container_id: str) -> bool:
    """Force-remove a container by id (``pg down`` for a docker server).

    Args:
        container_id: Docker container id.

    Returns:
        True if a container was removed.
    """
    try:
        docker: Any = importlib.import_module("docker")
        client = docker.from_env(timeout=PING_TIMEOUT_S)
        client.containers.get(container_id).remove(force=True)
    except Exception:  # noqa: BLE001 - already gone or no daemon
        return False
    return True
