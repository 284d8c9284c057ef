"""Settings: embedded defaults, environment parsing, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.settings import Settings, mask_url


def test_embedded_defaults_live_under_var(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_URL", "BROKER_URL", "CRM_URL", "ERP_URL", "LIMS_URL"):
        monkeypatch.delenv(f"HUB_{name}", raising=False)
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.database == f"sqlite:///{tmp_path / 'var' / 'hub.db'}"
    assert s.uses_embedded_broker
    assert s.system_url("erp") == f"sqlite:///{tmp_path / 'var' / 'erp.db'}"
    assert not s.system_configured("erp")
    assert (s.http_host, s.http_port, s.poll_interval) == ("127.0.0.1", 8080, 1.0)


def test_environment_is_read_and_secrets_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_BROKER_URL", "amqp://hub:s3cret@rabbit:5672/%2F")
    monkeypatch.setenv("HUB_ERP_URL", "mysql+pyodbc://root:hunter2@db:3306/erp?driver=X")
    monkeypatch.setenv("HUB_RETRY_DELAYS", "1, 2.5,10")
    monkeypatch.setenv("HUB_POLL_INTERVAL", "0.25")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.retry_delays == (1.0, 2.5, 10.0)
    assert s.poll_interval == 0.25
    shown = repr(s) + str(s.describe())
    assert "s3cret" not in shown and "hunter2" not in shown
    assert s.describe()["broker"] == "amqp://hub:***@rabbit:5672/%2F"
    assert s.system_configured("erp") and not s.uses_embedded_broker


def test_mask_url_keeps_everything_but_the_password() -> None:
    masked = mask_url("postgresql+psycopg://u:p@h:5432/db?x=1")
    assert masked == "postgresql+psycopg://u:***@h:5432/db?x=1"
    assert mask_url("sqlite:///var/hub.db") == "sqlite:///var/hub.db"
    assert mask_url("amqps://guest@h/%2F") == "amqps://guest@h/%2F"


def test_bad_values_are_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_HTTP_PORT", "eighty")
    with pytest.raises(ValueError, match="http_port"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_every_setting_is_in_the_readme() -> None:
    """The README's table of environment variables names every setting the hub reads."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    missing = [f"HUB_{name.upper()}" for name in Settings.model_fields
               if f"`HUB_{name.upper()}`" not in readme]
    assert not missing, f"not in the README's settings table: {missing}"
