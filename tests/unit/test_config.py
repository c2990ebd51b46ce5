"""Configuration: defaults, TOML, environment overrides, and the example file."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from ingestd import errors
from ingestd.config import AUTO_SFTP_PROCESSES_MAX, Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def test_defaults_need_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.sftp.port == 2222
    assert settings.database_url == "sqlite:///var/ingestd.db"
    assert settings.storage_path == Path("var/storage")
    assert settings.limits.max_file_bytes == 524_288_000


def test_toml_then_env_override(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('data_dir = "/srv/x"\n[sftp]\nport = 2300\nstable_seconds = 1.5\n')
    settings = load_settings(path, environ={"INGESTD_SFTP__PORT": "2299",
                                            "INGESTD_SFTP__IGNORE_PATTERNS": '["*.x"]'})
    assert settings.sftp.port == 2299
    assert settings.sftp.stable_seconds == 1.5
    assert settings.sftp.ignore_patterns == ["*.x"]
    assert settings.host_key_path == Path("/srv/x/ssh_host_ed25519_key")


def test_config_env_variable_names_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[http]\nport = 9000\n")
    assert load_settings(environ={"INGESTD_CONFIG": str(path)}).http.port == 9000


@pytest.mark.parametrize("content, message", [
    ("[sftp]\nport = 'abc'\n", "sftp.port"),
    ("[sftp]\nprot = 1\n", "sftp.prot"),
    ("[sftp\n", "not valid TOML"),
    # a field of several forms names it once, with every form it may take
    ("[sftp]\nprocesses = 'many'\n", r"sftp\.processes: .*valid integer.*; or .*'auto'"),
    ("[sftp]\nprocesses = 0\n", r"sftp\.processes: .*greater than or equal to 1"),
])
def test_bad_config_says_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "c.toml"
    path.write_text(content)
    with pytest.raises(errors.ConfigError, match=message):
        load_settings(path, environ={})


def test_sftp_processes_auto_is_one_per_usable_core_at_most_the_cap():
    assert Settings().sftp.processes == "auto"
    cores = len(os.sched_getaffinity(0))
    auto = Settings().sftp.process_count
    assert auto == min(cores, AUTO_SFTP_PROCESSES_MAX) and auto >= 1
    assert load_settings(environ={"INGESTD_SFTP__PROCESSES": "3"}).sftp.process_count == 3


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(errors.ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys |= _keys(annotation, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def _toml_keys(data: dict, prefix: str = "") -> set[str]:
    keys = set()
    for name, value in data.items():
        if isinstance(value, dict):
            keys |= _toml_keys(value, f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def test_example_names_every_setting_with_its_default():
    data = tomllib.loads(EXAMPLE.read_text())
    assert _toml_keys(data) == _keys(Settings)
    assert Settings.model_validate(data) == Settings()
