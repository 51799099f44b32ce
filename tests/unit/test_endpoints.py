"""The endpoints file (semtel_dagster.core.llm.endpoints)."""

from __future__ import annotations

import pytest

from semtel_dagster.core.llm.endpoints import NO_KEY, EndpointsFileError, load_endpoints, parse_endpoints

SECRET = "sk-test-SECRET-0123456789abcdef"


def _ep(**overrides):
    return {"name": "sim", "base_url": "http://127.0.0.1:8000/v1", "model": "gpt-4o-mini", **overrides}


def test_valid_file_defaults():
    parsed = parse_endpoints({"endpoints": [_ep(base_url="http://localhost:1/v1/", tpm=1000, rpm=10), _ep(name="b")]})
    a, b = parsed.endpoints
    assert a.base_url == "http://localhost:1/v1"  # trailing slash removed
    assert (a.tpm, a.rpm) == (1000, 10)
    assert (b.tpm, b.rpm, b.max_concurrency, b.timeout_s) == (None, None, 32, 60.0)
    assert b.api_key() == NO_KEY


@pytest.mark.parametrize(
    "data,field",
    [
        ({"endpoints": [_ep(base_url="localhost:8000")]}, "endpoints.0.base_url"),
        ({"endpoints": [_ep(), _ep(name="b", base_url="ftp://x")]}, "endpoints.1.base_url"),
        ({"endpoints": [_ep(tpm=-5)]}, "endpoints.0.tpm"),
        ({"endpoints": [_ep(rpm=0)]}, "endpoints.0.rpm"),
        ({"endpoints": [_ep(max_concurrency=0)]}, "endpoints.0.max_concurrency"),
        ({"endpoints": [_ep(temperature=0.5)]}, "endpoints.0.temperature"),
        ({"endpoints": [_ep(name="has space")]}, "endpoints.0.name"),
        ({"endpoints": [{"name": "x", "base_url": "http://h"}]}, "endpoints.0.model"),
        ({"endpoints": [_ep()], "extra": 1}, "extra"),
        ({"endpoints": []}, "endpoints"),
    ],
)
def test_errors_name_the_field(data, field):
    with pytest.raises(EndpointsFileError) as info:
        parse_endpoints(data, origin="my-endpoints.yaml")
    message = str(info.value)
    assert message.startswith("my-endpoints.yaml: ")
    assert f"{field}:" in message


def test_duplicate_names():
    with pytest.raises(EndpointsFileError) as info:
        parse_endpoints({"endpoints": [_ep(name="a"), _ep(name="a", model="other")]})
    assert "unique" in str(info.value) and "'a'" in str(info.value)


def test_not_a_mapping():
    with pytest.raises(EndpointsFileError):
        parse_endpoints(None)
    with pytest.raises(EndpointsFileError):
        parse_endpoints(["x"])


def test_api_key_from_env(monkeypatch):
    monkeypatch.setenv("SEMTEL_TEST_KEY", SECRET)
    (endpoint,) = parse_endpoints({"endpoints": [_ep(api_key_env="SEMTEL_TEST_KEY")]}).endpoints
    assert endpoint.api_key() == SECRET
    assert SECRET not in repr(endpoint) and SECRET not in str(endpoint.model_dump())


@pytest.mark.parametrize("value", [None, ""])
def test_unset_env_var_is_an_error(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("SEMTEL_TEST_KEY", raising=False)
    else:
        monkeypatch.setenv("SEMTEL_TEST_KEY", value)
    (endpoint,) = parse_endpoints({"endpoints": [_ep(api_key_env="SEMTEL_TEST_KEY")]}).endpoints
    with pytest.raises(EndpointsFileError, match="SEMTEL_TEST_KEY") as info:
        endpoint.api_key()
    assert "'sim'" in str(info.value)


def test_error_messages_never_contain_key_values(monkeypatch, tmp_path):
    monkeypatch.setenv("OTHER_KEY", SECRET)
    # a key pasted into the file where it does not belong is rejected without echoing it
    for data in (
        {"endpoints": [_ep(api_key=SECRET)]},
        {"endpoints": [_ep(api_key_env="OTHER_KEY", tpm=SECRET)]},
        {"endpoints": [_ep(base_url=SECRET)]},
        {"endpoints": [_ep(name=SECRET + " x")]},
    ):
        with pytest.raises(EndpointsFileError) as info:
            parse_endpoints(data)
        assert SECRET not in str(info.value)
    path = tmp_path / "endpoints.yaml"
    path.write_text(f"endpoints:\n  - name: a\n    base_url: http://h/v1\n    model: m\n    api_key: {SECRET}\n")
    with pytest.raises(EndpointsFileError) as info:
        load_endpoints(path)
    assert SECRET not in str(info.value) and "endpoints.0.api_key" in str(info.value)


def test_load_endpoints_file(tmp_path):
    path = tmp_path / "endpoints.yaml"
    path.write_text("endpoints:\n  - name: a\n    base_url: http://h:1/v1\n    model: m\n    rpm: 60\n")
    (endpoint,) = load_endpoints(path).endpoints
    assert (endpoint.name, endpoint.base_url, endpoint.model, endpoint.rpm) == ("a", "http://h:1/v1", "m", 60)


def test_load_endpoints_missing_file(tmp_path):
    with pytest.raises(EndpointsFileError, match="not found") as info:
        load_endpoints(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(info.value)


def test_load_endpoints_bad_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("endpoints:\n  - name: [unclosed\n")
    with pytest.raises(EndpointsFileError, match="not valid YAML") as info:
        load_endpoints(path)
    assert "bad.yaml" in str(info.value)


def test_load_endpoints_invalid_content_names_file(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text("endpoints:\n  - name: a\n    base_url: nope\n    model: m\n")
    with pytest.raises(EndpointsFileError) as info:
        load_endpoints(path)
    assert str(info.value).startswith(str(path)) and "endpoints.0.base_url" in str(info.value)


@pytest.mark.parametrize(
    "base_url",
    [f"https://user:{SECRET}@h/v1", f"https://{SECRET}@h/v1", f"https://h/v1?api-key={SECRET}", f"https://h/v1#{SECRET}"],
)
def test_keys_in_base_url_are_refused_without_echo(base_url):
    with pytest.raises(EndpointsFileError) as info:
        parse_endpoints({"endpoints": [_ep(base_url=base_url)]})
    assert "endpoints.0.base_url" in str(info.value) and SECRET not in str(info.value)


def test_yaml_error_on_the_key_line_does_not_echo_it(tmp_path):
    path = tmp_path / "endpoints.yaml"
    path.write_text(f"endpoints:\n  - name: a\n    api_key_env: {SECRET}: [\n")
    with pytest.raises(EndpointsFileError) as info:
        load_endpoints(path)
    message = str(info.value)
    assert "not valid YAML at line 3" in message and SECRET not in message and "sk-" not in message


@pytest.mark.parametrize("pasted", [SECRET, "0f1e2d3c4b5a69788796a5b4c3d2e1f0"])
def test_a_key_pasted_into_api_key_env_is_never_echoed(monkeypatch, pasted):
    monkeypatch.delenv(pasted, raising=False)
    try:
        (endpoint,) = parse_endpoints({"endpoints": [_ep(api_key_env=pasted)]}).endpoints
    except EndpointsFileError as refused:  # not a variable's name at all
        assert pasted not in str(refused) and "endpoints.0.api_key_env" in str(refused)
        return
    with pytest.raises(EndpointsFileError) as info:
        endpoint.api_key()
    assert pasted not in str(info.value) and "named by api_key_env" in str(info.value)
