"""Many workers need one catalog: a SQLite catalog is refused where workers share nothing."""
from __future__ import annotations

from pathlib import Path

import pytest

from iehub.config import Settings


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("IEHUB_CATALOG_URL", "IEHUB_LAKE_URL", "IEHUB_LAKE_CONN_ID", "AIRFLOW__CORE__EXECUTOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IEHUB_HOME", str(tmp_path / "home"))
    return monkeypatch


@pytest.mark.parametrize("executor", ["CeleryExecutor", "KubernetesExecutor",
                                      "airflow.providers.celery.executors.celery_executor.CeleryExecutor"])
def test_a_sqlite_catalog_is_refused_under_an_executor_that_runs_tasks_elsewhere(env, executor: str) -> None:
    env.setenv("AIRFLOW__CORE__EXECUTOR", executor)
    settings = Settings.from_env()
    with pytest.raises(RuntimeError) as refused:
        settings.catalog()
    message = str(refused.value)
    assert "\n" not in message and executor.rsplit(".", 1)[-1] in message and "IEHUB_CATALOG_URL" in message
    assert not (settings.home / "catalog.db").exists()


def test_a_sqlite_catalog_is_refused_when_the_lake_is_in_object_storage(env) -> None:
    env.setenv("IEHUB_LAKE_URL", "s3://bucket/hub?endpoint_override=http://user:secret@127.0.0.1:1")
    with pytest.raises(RuntimeError, match="object storage.*IEHUB_CATALOG_URL") as refused:
        Settings.from_env().catalog()
    assert "secret" not in str(refused.value)


@pytest.mark.parametrize("executor", [None, "LocalExecutor", "SequentialExecutor"])
def test_one_machine_keeps_the_embedded_sqlite_catalog(env, executor: str | None) -> None:
    if executor:
        env.setenv("AIRFLOW__CORE__EXECUTOR", executor)
    settings = Settings.from_env()
    settings.ensure()
    assert settings.catalog().landed_batches() == []
    assert (settings.home / "catalog.db").exists()


def test_a_postgresql_catalog_is_accepted_with_many_workers(env) -> None:
    env.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")
    env.setenv("IEHUB_LAKE_URL", "s3://bucket/hub")
    with pytest.raises(RuntimeError):  # no server needed: the check looks at the URL only
        Settings.from_env().check_shared_catalog()
    env.setenv("IEHUB_CATALOG_URL", "postgresql+psycopg://iehub@db.example/iehub")
    Settings.from_env().check_shared_catalog()
