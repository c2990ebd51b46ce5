"""One typed configuration model: built-in defaults, then a TOML file, then the environment.

Environment overrides are spelled ``INGESTD_<SECTION>__<KEY>`` (``INGESTD_SFTP__PORT=2299``);
top-level keys are ``INGESTD_<KEY>`` (``INGESTD_DATA_DIR``). Values are parsed as JSON where they
can be (numbers, booleans, lists) and taken as plain strings otherwise. Secrets never live here:
provider keys come from the environment of the process that needs them.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ingestd import errors

ENV_PREFIX = "INGESTD_"
# Variables that share the prefix but are not settings.
NON_SETTING_ENV = {"INGESTD_CONFIG", "INGESTD_TEST_DATABASE_URL"}
DEFAULT_CONFIG_FILE = Path("ingestd.toml")
# Each SFTP process is an interpreter of its own (about 90 MB resident): "auto" stops here.
AUTO_SFTP_PROCESSES_MAX = 8

DEFAULT_IGNORE_PATTERNS = [
    "*.filepart",
    "*.part",
    "*.partial",
    "*.tmp",
    "*.crdownload",
    ".*",
]


class Section(BaseModel):
    """A config section: unknown keys are an error, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")


class DatabaseSettings(Section):
    url: str = ""  # empty: sqlite file inside data_dir


class StorageSettings(Section):
    backend: Literal["local", "s3"] = "local"
    path: str = ""  # empty: <data_dir>/storage
    bucket: str = ""
    prefix: str = ""
    endpoint_url: str = ""
    region: str = ""


class SftpSettings(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 2222
    host_key: str = ""  # empty: <data_dir>/ssh_host_ed25519_key
    stable_seconds: float = 2.0
    ignore_patterns: list[str] = Field(default_factory=lambda: list(DEFAULT_IGNORE_PATTERNS))
    after_import: Literal["delete", "keep"] = "delete"
    # The defender (like SFTPGo's): a wrong password scores 1, an unknown user 2; an address
    # above the threshold within the window is refused for ban_seconds.
    defender_threshold: int = 15
    defender_window_seconds: float = 1800.0
    defender_ban_seconds: float = 1800.0
    # SFTP server processes beside the main one (sharing the port): more cores for SFTP.
    # "auto": one per core the daemon may use, at most AUTO_SFTP_PROCESSES_MAX.
    processes: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = "auto"

    @property
    def process_count(self) -> int:
        """How many SFTP processes to run (``processes``, with "auto" worked out)."""
        if self.processes != "auto":
            return self.processes
        return max(1, min(len(os.sched_getaffinity(0)), AUTO_SFTP_PROCESSES_MAX))


class HttpSettings(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    rate_limit_per_minute: int = 60  # requests per API key
    max_concurrent_uploads: int = 10  # per API key
    allow_private_urls: bool = False  # audio_url may point at private/loopback addresses
    audio_url_timeout_seconds: float = 60.0


class SweeperSettings(Section):
    interval_seconds: float = 5.0


class WatchFolder(Section):
    path: str
    campaign: str


class WatchSettings(Section):
    folders: list[WatchFolder] = Field(default_factory=list)


class PullSource(Section):
    host: str
    port: int = 22
    username: str
    key_file: str = ""
    remote_path: str = "/"
    campaign: str
    interval_seconds: float = 60.0


class PullSettings(Section):
    sources: list[PullSource] = Field(default_factory=list)


class PipelineSettings(Section):
    workers: int = 2
    transcriber: str = "pocketsphinx"
    analyzer: str = "rules"
    lease_seconds: float = 300.0
    poll_seconds: float = 1.0
    max_attempts: int = 3
    provider_concurrency: int = 4  # calls in flight per cloud provider


class LimitsSettings(Section):
    max_file_bytes: int = 524_288_000
    min_duration_seconds: float = 10.0
    max_duration_seconds: float = 10_800.0


class DeepgramSettings(Section):
    model: str = "nova-3"
    base_url: str = ""
    timeout_seconds: float = 300.0


class AssemblyaiSettings(Section):
    base_url: str = ""
    timeout_seconds: float = 600.0


class AnthropicSettings(Section):
    model: str = "claude-sonnet-4-6"
    base_url: str = ""
    timeout_seconds: float = 120.0


class WebhookSettings(Section):
    timeout_seconds: float = 10.0
    max_attempts: int = 8


class Settings(Section):
    """Every setting of the daemon and the CLI. Paths left empty derive from ``data_dir``."""

    data_dir: str = "./var"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    sftp: SftpSettings = Field(default_factory=SftpSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    sweeper: SweeperSettings = Field(default_factory=SweeperSettings)
    watch: WatchSettings = Field(default_factory=WatchSettings)
    pull: PullSettings = Field(default_factory=PullSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    deepgram: DeepgramSettings = Field(default_factory=DeepgramSettings)
    assemblyai: AssemblyaiSettings = Field(default_factory=AssemblyaiSettings)
    anthropic: AnthropicSettings = Field(default_factory=AnthropicSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.data_path / 'ingestd.db'}"

    @property
    def storage_path(self) -> Path:
        return Path(self.storage.path) if self.storage.path else self.data_path / "storage"

    @property
    def host_key_path(self) -> Path:
        if self.sftp.host_key:
            return Path(self.sftp.host_key)
        return self.data_path / "ssh_host_ed25519_key"

    @property
    def landing_path(self) -> Path:
        """Where completed uploads wait for the batch engine: ``<landing>/<slug>/<subfolders>``."""
        return self.data_path / "landing"

    @property
    def incoming_path(self) -> Path:
        """Where SFTP uploads are written until the client closes them cleanly."""
        return self.data_path / "incoming"

    @property
    def rejected_path(self) -> Path:
        """Where files that failed or were skipped are kept, out of the landing tree."""
        return self.data_path / "rejected"


def load_settings(path: str | Path | None = None,
                  environ: dict[str, str] | None = None) -> Settings:
    """Build the settings: defaults, then the TOML file, then ``INGESTD_*`` variables.

    ``path`` None means ``$INGESTD_CONFIG``, else ``./ingestd.toml`` if present, else no file.
    """
    env = dict(os.environ if environ is None else environ)
    data = _read_toml(_choose_file(path, env))
    for key, value in env.items():
        if key.startswith(ENV_PREFIX) and key not in NON_SETTING_ENV:
            _apply_env(data, key[len(ENV_PREFIX):], value)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise errors.ConfigError(f"invalid configuration: {_describe(exc)}") from exc


def _choose_file(path: str | Path | None, env: dict[str, str]) -> Path | None:
    if path is not None:
        return Path(path)
    if env.get("INGESTD_CONFIG"):
        return Path(env["INGESTD_CONFIG"])
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def _read_toml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as exc:
        raise errors.ConfigError(f"config file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise errors.ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def _apply_env(data: dict[str, Any], name: str, raw: str) -> None:
    parts = [p.lower() for p in name.split("__") if p]
    target = data
    for part in parts[:-1]:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise errors.ConfigError(f"{ENV_PREFIX}{name}: {part} is not a section")
    target[parts[-1]] = _parse_env_value(raw)


def _parse_env_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _describe(exc: ValidationError) -> str:
    """The first field in error and what it should be (every choice of an ``A | B`` field)."""
    problems: dict[str, list[str]] = {}
    for error in exc.errors():
        # A union's members add their names ("constrained-int", "literal['auto']") to the
        # location; setting names are identifiers, list positions numbers.
        where = ".".join(str(part) for part in error["loc"]
                         if isinstance(part, int) or part.isidentifier())
        problems.setdefault(where, []).append(error["msg"])
    where, messages = next(iter(problems.items()))
    return f"{where}: {'; or '.join(messages)}"
