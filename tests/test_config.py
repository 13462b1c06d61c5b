import pytest
from recognition_service.config import ConfigError, load_settings


def test_defaults_are_valid():
    s = load_settings()
    assert s.DET_SIZE == 640 and s.DB_POOL_MAX >= s.DB_POOL_MIN
    assert s.model_path.name == "buffalo_l"


@pytest.mark.parametrize("name,value", [
    ("DB_POOL_MAX", "many"), ("DB_POOL_TIMEOUT_S", "-1"), ("DET_SIZE", "650"),
    ("RECOGNITION_THRESHOLD", "2"), ("LOG_LEVEL", "chatty"), ("MAX_UPLOAD_MB", "0"),
])
def test_bad_value_names_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert name in str(err.value)


def test_pool_bounds_are_checked(monkeypatch):
    monkeypatch.setenv("DB_POOL_MIN", "5")
    monkeypatch.setenv("DB_POOL_MAX", "2")
    with pytest.raises(ConfigError, match="DB_POOL_MIN"):
        load_settings()


def test_model_dir_wins_over_name(monkeypatch, tmp_path):
    monkeypatch.setenv("MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("MODEL_NAME", "other")
    assert load_settings().model_path == tmp_path


def test_dotenv_file_is_read(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("DET_SIZE=320\nLOG_LEVEL=debug\n")
    s = load_settings()
    assert s.DET_SIZE == 320 and s.LOG_LEVEL == "DEBUG"
