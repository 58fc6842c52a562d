from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from connectors.errors import SpecError
from connectors.secrets import Secret, mask, resolve_secret
from connectors.spec import SPEC_DIR, interpolate_env, load_spec

BASE = yaml.safe_load((SPEC_DIR / "lingang_platform.yaml").read_text(encoding="utf-8"))


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _variant(change) -> dict:
    data = yaml.safe_load(yaml.safe_dump(BASE, allow_unicode=True))
    change(data)
    return data


def test_shipped_spec_is_valid() -> None:
    spec = load_spec("lingang_platform")
    assert set(spec.streams) == {"notices", "talent_demands", "talent_supplies", "cooperations", "rd_projects",
                                 "tech_services"}
    assert spec.incremental and spec.incremental.cursor_field == "updateTime"


INVALID = {
    "unknown top-level key": (lambda d: d.update(retries=3), "retries"),
    "page size zero": (lambda d: d["paging"].update(page_size=0), "paging.page_size"),
    "unknown paging kind": (lambda d: d["paging"].update(kind="offset"), "paging"),
    "literal secret": (lambda d: d["auth"].update(client_secret="hunter2"), "auth.client_secret"),
    "secret in two places": (lambda d: d["auth"].update(client_id={"env": "A", "airflow_conn": "b"}), "client_id"),
    "no streams": (lambda d: d.update(streams={}), "streams"),
    "bad business action": (lambda d: d["envelope"]["business_codes"].update({"1": "explode"}), "business_codes"),
    "unknown entity": (lambda d: d["streams"]["notices"].update(entity="noticez"), "noticez"),
    "unknown target field": (lambda d: d["streams"]["notices"]["mapping"]["fields"].update(titel="title"), "titel"),
    "unknown normaliser": (lambda d: d["streams"]["notices"]["mapping"]["fields"].update(
        title={"from": "title", "normalise": ["sparkle"]}), "sparkle"),
    "bad source name": (lambda d: d.update(name="Lingang Platform"), "name"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_specs_fail_with_location(case: str, tmp_path: Path) -> None:
    change, needle = INVALID[case]
    path = _write(tmp_path, _variant(change))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert needle in message
    assert "hunter2" not in message
    assert str(path) in message


def test_errors_point_at_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, _variant(lambda d: d["paging"].update(page_size=-1)))
    with pytest.raises(SpecError, match=r"line \d+"):
        load_spec(path)


def test_unknown_source_lists_known() -> None:
    with pytest.raises(SpecError, match="lingang_platform"):
        load_spec("nosuchsource")


def test_env_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IEHUB_X", raising=False)
    assert interpolate_env("${IEHUB_X:-http://a}/b") == "http://a/b"
    monkeypatch.setenv("IEHUB_X", "http://c")
    assert interpolate_env("${IEHUB_X:-http://a}/b") == "http://c/b"
    monkeypatch.delenv("IEHUB_X")
    with pytest.raises(SpecError, match="IEHUB_X"):
        interpolate_env("${IEHUB_X}")


def test_secrets_resolve_late_and_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IEHUB_T_SECRET", "s3cr3t-value")
    secret = resolve_secret({"env": "IEHUB_T_SECRET"}, "spec t: auth.client_secret")
    assert secret.reveal() == "s3cr3t-value"
    assert "s3cr3t" not in repr(secret) and "s3cr3t" not in str(secret) and "s3cr3t" not in f"{secret}"
    assert mask("token s3cr3t-value refused", [secret]) == "token *** refused"
    monkeypatch.delenv("IEHUB_T_SECRET")
    with pytest.raises(SpecError, match="IEHUB_T_SECRET is not set"):
        resolve_secret({"env": "IEHUB_T_SECRET"}, "spec t")


def test_airflow_connection_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_LINGANG_TEST", "http://client-a:pa%40ss@platform.example:443/")
    assert resolve_secret({"airflow_conn": "lingang_test", "field": "login"}, "x").reveal() == "client-a"
    assert resolve_secret({"airflow_conn": "lingang_test", "field": "password"}, "x").reveal() == "pa@ss"
    monkeypatch.setenv("AIRFLOW_CONN_LINGANG_JSON", '{"login": "id1", "password": "pw1"}')
    assert resolve_secret({"airflow_conn": "lingang_json"}, "x") == Secret("pw1")
    with pytest.raises(SpecError, match="not defined"):
        resolve_secret({"airflow_conn": "absent_conn"}, "x")


def test_no_shipped_spec_keys_on_personal_data() -> None:
    from connectors.spec import available_sources, personal_key_warnings

    for source in available_sources():
        assert personal_key_warnings(load_spec(source)) == [], source


@pytest.mark.parametrize("change, expected", [
    (lambda s: s["streams"]["trainees"].update(primary_key="身份证号"), ["primary_key '身份证号'", "id_number"]),
    (lambda s: s["streams"]["trainees"]["mapping"]["fields"].update(trainee_id={"from": "身份证号"}),
     ["trainee_id is mapped from '身份证号'", "in clear"]),
    (lambda s: s["streams"]["trainees"].update(primary_key="联系电话"), ["primary_key '联系电话'", "its name says so"]),
    (lambda s: s["streams"]["trainees"]["mapping"]["fields"].update(trainee_id={"from": ["学员编号", "身份证号"]}),
     ["trainee_id is mapped from '身份证号'", "in clear"]),  # the second column of a coalesce counts too
])
def test_a_stream_keyed_on_personal_data_is_valid_but_warned_about(tmp_path: Path, change, expected) -> None:
    from connectors.spec import personal_key_warnings

    data = yaml.safe_load((SPEC_DIR / "district_minhang.yaml").read_text(encoding="utf-8"))
    change(data)
    warnings = personal_key_warnings(load_spec(_write(tmp_path, data)))  # loads: a warning, not an error
    assert len(warnings) == 1 and warnings[0].startswith("streams.trainees:")
    assert all(part in warnings[0] for part in expected), warnings
