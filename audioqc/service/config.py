"""The service's settings, validated once at start-up."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from audiolib import __version__
from audiolib.errors import InvalidParameter

__all__ = ["ServiceConfig", "load_api_keys", "MiB"]

MiB = 1 << 20


@dataclass(frozen=True)
class ServiceConfig:
    """Everything ``audioqc serve`` is configured with.

    Attributes
    ----------
    data_dir : str
        Directory of the job database (``jobs.sqlite3``), uploads, downloaded inputs and outputs.
    api_keys : tuple of str
        Accepted ``x-api-key`` values (never logged, never stored: jobs keep a hash).
    workers : int
        Analysis worker processes.
    max_queue : int
        Jobs accepted and not finished (downloading, queued, running) at most: the silence
        endpoint's ``MAX_QUEUE_LENGTH``; one more is refused with 429.
    max_media_bytes : int
        Largest upload, download or base64 ``data``, bytes (413 beyond).
    download_timeout_s : float
        Longest a download (all its redirects) may take, seconds.
    allow_private_urls : bool
        Let URL inputs, outputs and webhooks reach loopback, private, link-local and other
        non-global addresses (tests, or a service inside a trusted network).
    allowed_networks : tuple of str
        CIDR networks reachable even when private addresses are refused (e.g. one internal
        storage host).
    allow_s3 : bool
        Accept ``s3://`` inputs and outputs, read and written with the server's own credentials.
    webhook_attempts, webhook_backoff_s, webhook_timeout_s
        Webhook delivery: attempts, first delay between attempts (doubled each time), timeout of
        one attempt (seconds).
    hosts_only : bool
        Resolve host names from /etc/hosts only, never through DNS (air-gapped hosts, tests).
    job_timeout_s : float
        Longest a job may run in a worker before the worker is killed and the job failed.
    build_number : str
        The silence envelope's ``build_number``.
    """

    data_dir: str
    api_keys: tuple[str, ...]
    workers: int = 2
    max_queue: int = 64
    max_media_bytes: int = 512 * MiB
    download_timeout_s: float = 300.0
    allow_private_urls: bool = False
    allowed_networks: tuple[str, ...] = ()
    allow_s3: bool = False
    webhook_attempts: int = 5
    webhook_backoff_s: float = 1.0
    webhook_timeout_s: float = 10.0
    job_timeout_s: float = 3600.0
    hosts_only: bool = False
    build_number: str = field(default=__version__)

    def __post_init__(self) -> None:
        if not self.api_keys:
            raise InvalidParameter("no API key configured: set AUDIOQC_API_KEYS (comma-separated) or give --key-file")
        if any(len(k) < 8 for k in self.api_keys):
            raise InvalidParameter("API keys must be at least 8 characters")
        if self.workers < 1:
            raise InvalidParameter(f"--workers {self.workers!r}: at least 1")
        if self.max_queue < 1:
            raise InvalidParameter(f"--max-queue {self.max_queue!r}: at least 1")
        if self.max_media_bytes < 1:
            raise InvalidParameter(f"--max-upload-mb: must be positive (got {self.max_media_bytes} bytes)")
        if not self.download_timeout_s > 0 or not self.job_timeout_s > 0:
            raise InvalidParameter("timeouts must be positive")
        if self.webhook_attempts < 1 or self.webhook_backoff_s < 0 or not self.webhook_timeout_s > 0:
            raise InvalidParameter("webhook attempts >= 1, backoff >= 0, timeout > 0")
        for net in self.allowed_networks:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise InvalidParameter(f"--allow-network {net!r}: not a CIDR network such as 10.1.2.0/24") from None

    @property
    def max_json_bytes(self) -> int:
        """Largest JSON request body: base64 ``data`` of the largest media (4/3) and room around it."""
        return self.max_media_bytes * 4 // 3 + MiB


def load_api_keys(env_value: str | None, key_file: str | None) -> tuple[str, ...]:
    """API keys from ``AUDIOQC_API_KEYS`` (comma-separated) and a key file (one key a line, ``#``
    comments), in that order, without duplicates or blanks.

    Raises
    ------
    InvalidParameter
        The key file cannot be read.
    """
    keys: list[str] = [k.strip() for k in (env_value or "").split(",")]
    if key_file:
        try:
            with open(key_file, encoding="utf-8") as f:
                keys += [line.split("#", 1)[0].strip() for line in f]
        except OSError as exc:
            raise InvalidParameter(f"--key-file {key_file}: cannot read: {exc.strerror or exc}") from None
    return tuple(dict.fromkeys(k for k in keys if k))


def default_workers() -> int:
    """One worker per core the process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
