"""The Dask scheduler that runs publish's shards: reached before any flow starts, so a bad address fails fast.

Imports nothing heavy until a connection is open (the CLI calls it before Prefect, torch or MLflow load).
"""

from __future__ import annotations

import socket

from tasks.core import settings
from tasks.core.errors import ClusterUnavailable

CONNECT_TIMEOUT_S = 5.0


def check(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> str:
    """The address, once a Dask scheduler has answered there; else ClusterUnavailable within ~timeout_s."""
    _, host, port = settings.parse_dask_address(address)
    where = f"Dask scheduler {address}"
    try:
        socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ClusterUnavailable(f"{where}: host {host!r} does not resolve ({e.strerror})") from None
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as e:
        why = e.strerror or f"no answer within {timeout_s:g} s"
        raise ClusterUnavailable(f"{where}: nothing answers on {host}:{port} ({why})") from None
    from distributed import Client   # Dask's client: ~1 s to import, paid only when shards run on a scheduler

    try:  # something listens: is it a scheduler? (the comm handshake, then the client goes away)
        client = Client(address, timeout=timeout_s, set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise ClusterUnavailable(f"{where}: {host}:{port} answers but not as a Dask scheduler "
                                 f"({' '.join(str(e).split()) or type(e).__name__})") from None
    client.close()
    return address
