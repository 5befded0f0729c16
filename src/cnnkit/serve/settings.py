"""`ServeSettings`: every limit and switch of the HTTP service in one frozen dataclass."""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass, field

from cnnkit.errors import CnnkitError


@dataclass(frozen=True)
class ServeSettings:
    """How the service batches, what it accepts and who may call it.

    `api_key` None means no authentication (only allowed on loopback unless `allow_no_auth`).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    max_batch_size: int = 16
    max_delay_ms: float = 5.0
    max_upload_mb: float = 10.0
    max_pixels: int = 40_000_000
    max_queue: int = 256
    timeout_s: float = 30.0
    workers: int = 1
    max_files: int = 32
    default_top_k: int = 5
    api_key: str | None = field(default=None, repr=False)  # a secret: kept out of logs and tracebacks
    allow_no_auth: bool = False
    decode_threads: int = 2
    threads: int | None = None  # torch intra-op threads of the inference thread; None: the count at start

    def __post_init__(self) -> None:
        for name in ("max_upload_mb", "timeout_s", "max_delay_ms"):  # nan slips past every comparison
            if not math.isfinite(getattr(self, name)):
                raise CnnkitError(f"serve: {name} must be a finite number, got {getattr(self, name)}")
        for name in ("max_batch_size", "max_queue", "workers", "max_files", "default_top_k", "max_pixels",
                     "decode_threads", "threads"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise CnnkitError(f"serve: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_upload_mb", "timeout_s"):
            if not getattr(self, name) > 0:
                raise CnnkitError(f"serve: {name} must be > 0, got {getattr(self, name)}")
        if self.max_delay_ms < 0:
            raise CnnkitError(f"serve: max_delay_ms must be >= 0, got {self.max_delay_ms}")
        if not 0 <= self.port <= 65535:
            raise CnnkitError(f"serve: port must be in 0..65535, got {self.port}")
        if self.api_key is not None and len(self.api_key) < 16:
            raise CnnkitError("serve: the API key must be at least 16 characters")
        if self.api_key is None and not self.allow_no_auth and not is_loopback(self.host):
            raise CnnkitError(f"serve: binding to {self.host} (not loopback) needs --api-key-file, "
                              "or --no-auth to serve without authentication")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
