"""Configuration: strict keys with their place, env overrides, secrets that never print."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, env_overrides, load_config

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_config_is_valid() -> None:
    settings = load_config(ROOT / "config.yaml", {})
    assert settings.wecom.api_base == "https://qyapi.weixin.qq.com/cgi-bin"
    assert settings.timezone == "Asia/Shanghai"
    assert settings.wecom.member_messages.per_minute == 30


def test_unknown_key_names_file_line_and_path(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  host: 0.0.0.0\n  prot: 8080\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert info.value.problems == [f"{path}:3 (server.prot): Extra inputs are not permitted"]


def test_bad_value_names_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "wecom:\n  quota:\n    budget_ratio: 1.5\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert info.value.problems[0].startswith(f"{path}:3 (wecom.quota.budget_ratio):")


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  host: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    assert f"{path}:" in info.value.problems[0]
    assert "invalid YAML" in info.value.problems[0]


def test_environment_overrides_nested_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 8080\n")
    settings = load_config(
        path,
        {
            "BOT_SERVER__PORT": "9090",
            "BOT_DATABASE__URL": "postgresql://bot@db/bot",
            "BOT_WECOM__API_BASE": "http://127.0.0.1:8900/cgi-bin/",
            "BOT_WECOM__CORP_ID": "ww123",
            "BOT_WECOM__AGENT_ID": "1000002",
        },
    )
    assert settings.server.port == 9090
    assert settings.database.url == "postgresql://bot@db/bot"
    assert settings.wecom.api_base == "http://127.0.0.1:8900/cgi-bin"
    assert (settings.wecom.corp_id, settings.wecom.agent_id) == ("ww123", 1000002)


def test_environment_override_of_one_mapping_key_keeps_the_other_defaults(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "server:\n  port: 8080\n")  # no tag_sync section at all
    defaults = load_config(path, {}).tag_sync.group_names
    settings = load_config(path, {"BOT_TAG_SYNC__GROUP_NAMES__ASSET": "资产等级（规则）"})
    assert settings.tag_sync.group_names == {**defaults, "asset": "资产等级（规则）"}
    assert len(settings.tag_sync.group_names) == len(defaults) == 6


def test_a_mapping_written_in_yaml_still_replaces_the_default_whole(tmp_path: Path) -> None:
    path = write(tmp_path, "tag_sync:\n  group_names:\n    asset: 资产\n    payroll: 代发\n")
    settings = load_config(path, {"BOT_TAG_SYNC__GROUP_NAMES__PAYROLL": "代发工资"})
    assert settings.tag_sync.group_names == {"asset": "资产", "payroll": "代发工资"}


def test_a_variable_nested_below_a_value_is_named_not_the_yaml_line(tmp_path: Path) -> None:
    path = write(tmp_path, "tag_sync:\n  group_names:\n    asset: 资产\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {"BOT_TAG_SYNC__GROUP_NAMES__ASSET__X": "1"})
    assert info.value.problems[0].startswith(
        "environment BOT_TAG_SYNC__GROUP_NAMES__ASSET__X (tag_sync.group_names.asset):"
    )


def test_a_single_underscore_override_is_refused_with_the_name_it_meant(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    with pytest.raises(ConfigError) as info:
        load_config(path, {"BOT_DATABASE_URL": "sqlite:///x.db", "BOT_TEST_POSTGRES_URL": "y"})
    assert info.value.problems == [
        "environment BOT_DATABASE_URL: not read; BOT_DATABASE__URL sets that key"
        " (a section and its key are joined by '__')"
    ]
    # Another tool's variable that only shares the prefix stays ignored.
    assert load_config(path, {"BOT_TEST_POSTGRES_URL": "y"}).database.url == "sqlite:///bot.db"


def test_unknown_environment_key_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    with pytest.raises(ConfigError) as info:
        load_config(path, {"BOT_WECOM__SECRETT": "x"})
    assert "BOT_WECOM__SECRETT" in info.value.problems[0]


def test_secrets_never_print(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    settings = load_config(
        path,
        {
            "BOT_WECOM__SECRET": "s3cr3t-value",
            "BOT_WECOM__TOKEN": "tok3n",
            "BOT_WECOM__ENCODING_AES_KEY": "a" * 43,
        },
    )
    shown = f"{settings!r} {settings} {settings.model_dump()} {settings.model_dump_json()}"
    for secret in ("s3cr3t-value", "tok3n", "a" * 43):
        assert secret not in shown
    assert settings.wecom.secret.get_secret_value() == "s3cr3t-value"


def test_malformed_aes_key_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    with pytest.raises(ConfigError, match="43 letters and digits"):
        load_config(path, {"BOT_WECOM__ENCODING_AES_KEY": "short"})


def test_production_requires_secrets_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "environment: production\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {})
    joined = "\n".join(info.value.problems)
    for name in ("CORP_ID", "SECRET", "TOKEN", "ENCODING_AES_KEY", "AGENT_ID"):
        assert f"BOT_WECOM__{name}" in joined


def test_config_path_from_bot_config(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  port: 7001\n")
    assert load_config(None, {"BOT_CONFIG": str(path)}).server.port == 7001
    with pytest.raises(ConfigError, match="file not found"):
        load_config(None, {"BOT_CONFIG": str(tmp_path / "missing.yaml")})


def test_env_overrides_ignore_other_variables() -> None:
    tree, origins = env_overrides(
        {
            "PATH": "/bin",
            "BOT_CONFIG": "x",
            "BOT_SERVER__PORT": "1",
            "BOT_": "2",
            "BOT_OTHER_TOOL": "3",
        }
    )
    assert tree == {"server": {"port": "1"}}
    assert origins == {("server", "port"): "BOT_SERVER__PORT"}
