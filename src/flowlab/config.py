"""`flowlab.rapidata_config`: hosted's process-wide SDK configuration, under hosted's attribute names.

Hosted programs set `rapidata_config.upload.maxWorkers = 20` or `rapidata_config.logging.level = "DEBUG"`; those
lines run unchanged here. What flowlab acts on:

- `logging.level`, `logging.log_file`, `logging.format`: the `flowlab` logger's level, a file it also writes to,
  and the format of that file's lines.
- `upload.maxRetries`: a file upload that fails for a passing reason (the server unreachable or restarting, a 5xx
  answer) is sent again up to this many times before it counts as a failed upload.

Everything else hosted has is accepted and checked as hosted checks it, and does nothing, because flowlab has no
such machinery: `enableBetaFeatures`; `upload.maxWorkers` (files go up one at a time), the upload cache
(`cacheToDisk`, `cacheTimeout`, `cacheLocation`, `cacheShards`: the server keeps each file once, by its hash),
`batchSize`/`batchPollInterval` (URLs are never fetched, so never batched), `compression` (files are shown as
uploaded), `contextShortening`, `failureTolerance` (hosted's job definitions; flows use
`accept_failed_uploads`, as hosted's do), `checkForExplicitContent`; `logging.silent_mode` (flowlab prints no
progress bars), `logging.enable_otlp` (it sends no traces) and `logging.environment`. A name hosted does not
have raises AttributeError, as hosted's does. Environment variables `RAPIDATA_<name>` set the initial values, as
hosted reads them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["CompressionConfig", "LoggingConfig", "RapidataConfig", "UploadConfig", "rapidata_config"]

_FROZEN = {"cacheLocation", "cacheShards"}  # hosted's: fixed once the process starts


def _from_env(name: str, default: Any) -> Any:
    raw = os.environ.get(f"RAPIDATA_{name}")
    if raw is None or isinstance(default, CompressionConfig):
        return default
    if isinstance(default, bool) or (default is None and name == "checkForExplicitContent"):
        return raw.strip().lower() in ("1", "true", "yes")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, Path):
        return Path(raw)
    return raw


class _Checked:
    """Assignments are checked as hosted checks them; an unknown name is an error, never silently kept."""

    def _check(self, name: str, value: Any) -> Any:
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        known = {f.name for f in fields(self)}  # type: ignore[arg-type]
        if name not in known:
            raise AttributeError(
                f"{type(self).__name__} has no setting {name!r}; the settings are {', '.join(sorted(known))}."
            )
        if name in _FROZEN and name in self.__dict__:
            raise AttributeError(f"{name} is fixed once the process starts; set RAPIDATA_{name} before it does.")
        object.__setattr__(self, name, self._check(name, value))

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            value = _from_env(f.name, getattr(self, f.name))
            object.__setattr__(self, f.name, self._check(f.name, value))


@dataclass
class CompressionConfig(_Checked):
    """Hosted's per-upload image compression override. flowlab shows files as uploaded, so it has no effect."""

    enabled: bool | None = None
    quality: int | None = None
    max_dimension: int | None = None

    def _check(self, name: str, value: Any) -> Any:
        if name == "quality" and value is not None and not 1 <= value <= 100:
            raise ValueError("quality is a number from 1 to 100.")
        if name == "max_dimension" and value is not None and value < 1:
            raise ValueError("max_dimension is at least 1 pixel.")
        return value

    def is_set(self) -> bool:
        return any(v is not None for v in (self.enabled, self.quality, self.max_dimension))


@dataclass
class UploadConfig(_Checked):
    """How files go up. flowlab acts on `maxRetries`; the rest are hosted's and kept (see the module's notes)."""

    maxWorkers: int = 25
    maxRetries: int = 3
    cacheToDisk: bool = True
    cacheTimeout: float = 1.0
    cacheLocation: Path = field(default_factory=lambda: Path.home() / ".cache" / "rapidata" / "upload_cache")
    cacheShards: int = 32
    batchSize: int = 1000
    batchPollInterval: float = 0.5
    compression: CompressionConfig | None = None
    contextShortening: bool = False
    failureTolerance: float = 0.0
    checkForExplicitContent: bool | None = None

    def _check(self, name: str, value: Any) -> Any:
        if name == "maxRetries" and (not isinstance(value, int) or value < 0):
            raise ValueError("maxRetries is a whole number of retries, 0 or more.")
        if name == "cacheShards" and value < 1:
            raise ValueError("cacheShards must be at least 1.")
        if name == "batchSize" and value < 100:
            raise ValueError("batchSize must be at least 100.")
        if name == "failureTolerance" and not 0.0 <= value <= 1.0:
            raise ValueError("failureTolerance is a fraction from 0.0 to 1.0.")
        if name == "compression" and value is not None and not isinstance(value, CompressionConfig):
            raise ValueError("compression is a CompressionConfig (or None).")
        return value


@dataclass
class LoggingConfig(_Checked):
    """The `flowlab` logger: its level, and a file it also writes to in `format`. Setting one applies it."""

    level: str = "WARNING"
    log_file: str | None = None
    format: str = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
    silent_mode: bool = False
    enable_otlp: bool = False
    environment: str = "rapidata.ai"

    def _check(self, name: str, value: Any) -> Any:
        if name == "level" and not isinstance(logging.getLevelName(str(value).upper()), int):
            raise ValueError(f"level is a logging level (DEBUG, INFO, WARNING, ERROR, CRITICAL); got {value!r}.")
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        # Applied when a program sets one, never on import: flowlab leaves logging alone until asked.
        if name in ("level", "log_file", "format") and self.__dict__.get("_ready"):
            _apply_logging(self)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "_ready", True)


_file_handler: logging.Handler | None = None


def _apply_logging(config: LoggingConfig) -> None:
    """Point the `flowlab` logger at the configured level and file."""
    global _file_handler
    logger = logging.getLogger("flowlab")
    logger.setLevel(config.level.upper())
    if _file_handler is not None:
        logger.removeHandler(_file_handler)
        _file_handler.close()
        _file_handler = None
    if config.log_file:
        Path(config.log_file).expanduser().parent.mkdir(parents=True, exist_ok=True)
        _file_handler = logging.FileHandler(Path(config.log_file).expanduser(), encoding="utf-8")
        _file_handler.setFormatter(logging.Formatter(config.format))
        logger.addHandler(_file_handler)


@dataclass
class RapidataConfig(_Checked):
    """Hosted's `rapidata_config`: `upload` and `logging` settings, and `enableBetaFeatures`."""

    enableBetaFeatures: bool = False
    upload: UploadConfig = field(default_factory=UploadConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


rapidata_config = RapidataConfig()
