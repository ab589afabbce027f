import pytest

from detector.app import create_app
from detector.config import ConfigError, load_config


@pytest.mark.parametrize("secret", [None, "change-me"])
def test_production_refuses_missing_or_example_secrets(monkeypatch, tmp_path, secret):
    monkeypatch.setenv("DETECTOR_ENV", "production")
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    monkeypatch.setenv("JWT_SECRET_KEY", "a-real-jwt-secret-of-enough-length")
    if secret is None:
        monkeypatch.delenv("SECRET_KEY", raising=False)
    else:
        monkeypatch.setenv("SECRET_KEY", secret)
    with pytest.raises(ConfigError, match="SECRET_KEY is missing or still the example value"):
        create_app()


def test_production_starts_with_real_secrets(monkeypatch, tmp_path):
    monkeypatch.setenv("DETECTOR_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", "s" * 40)
    monkeypatch.setenv("JWT_SECRET_KEY", "j" * 40)
    config = load_config({"DATA_DIR": str(tmp_path)})
    assert config["ENV"] == "production" and config["SECRET_KEY"] == "s" * 40


def test_development_makes_and_keeps_its_own_secrets(monkeypatch, tmp_path):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("JWT_SECRET_KEY", raising=False)
    monkeypatch.delenv("DETECTOR_ENV", raising=False)
    first = load_config({"DATA_DIR": str(tmp_path)})
    second = load_config({"DATA_DIR": str(tmp_path)})
    assert first["JWT_SECRET_KEY"] == second["JWT_SECRET_KEY"]
    assert len(first["JWT_SECRET_KEY"]) >= 32


def test_embedded_defaults_need_no_servers(monkeypatch, tmp_path):
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    config = load_config({"DATA_DIR": str(tmp_path), "ENV": "test"})
    assert config["DATABASE_URL"].startswith("sqlite:///")
    assert config["CELERY_BROKER_URL"] == "filesystem://"
    assert config["CELERY_RESULT_BACKEND"].startswith("file://")


def test_bad_number_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("CHUNK_FRAMES", "lots")
    with pytest.raises(ConfigError, match="CHUNK_FRAMES must be an integer"):
        load_config()
