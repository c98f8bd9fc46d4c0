"""The `bot` command as an operator uses it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def project_copy(tmp_path: Path) -> Path:
    """config.yaml, content/ and schedules/ in a folder a test may break."""
    import shutil

    for name in ("content", "schedules"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    return tmp_path / "config.yaml"


def test_check_passes_on_the_shipped_files() -> None:
    result = runner.invoke(app, ["check", "--config", str(ROOT / "config.yaml")])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_check_reports_each_problem_with_file_and_line(tmp_path: Path) -> None:
    config = project_copy(tmp_path)
    config.write_text(config.read_text() + "\nbogus_section: 1\n", encoding="utf-8")
    result = runner.invoke(app, ["check", "--config", str(config)])
    assert result.exit_code == 1
    line = len(config.read_text().splitlines())
    assert f"{config}:{line} (bogus_section)" in result.output


def test_check_reports_broken_templates_and_schedules(tmp_path: Path) -> None:
    config = project_copy(tmp_path)
    broken = tmp_path / "content" / "welcome" / "default.txt.j2"
    broken.write_text("第一行\n第二行 {{ manager \n", encoding="utf-8")
    (tmp_path / "schedules" / "week.yaml").write_text("monday:\n  - [unclosed\n", encoding="utf-8")
    result = runner.invoke(app, ["check", "--config", str(config)])
    assert result.exit_code == 1
    assert f"{broken}:2:" in result.output
    assert f"{tmp_path / 'schedules' / 'week.yaml'}:" in result.output


def test_check_reports_a_missing_welcome_template(tmp_path: Path) -> None:
    config = project_copy(tmp_path)
    (tmp_path / "content" / "welcome" / "senior.txt.j2").unlink()
    result = runner.invoke(app, ["check", "--config", str(config)])
    assert result.exit_code == 1
    assert "welcome.by_state.qr_senior_club" in result.output


def test_db_upgrade_then_the_start_check_passes(tmp_path: Path) -> None:
    config = project_copy(tmp_path)
    env = {"BOT_DATABASE__URL": f"sqlite:///{tmp_path / 'bot.db'}"}
    result = runner.invoke(app, ["tick", "--config", str(config)], env=env)
    assert result.exit_code == 2
    assert "bot db upgrade" in result.output
    result = runner.invoke(app, ["db", "upgrade", "--config", str(config)], env=env)
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app, ["tick", "--config", str(config), "--at", "2026-11-23T09:00:00"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "2026-11-23T09:00:00+08:00" in result.output


def test_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    config = project_copy(tmp_path)
    result = runner.invoke(app, ["sync", "--config", str(config)], env={"BOT_SERVER__PORT": "x"})
    assert result.exit_code == 2
    assert "BOT_SERVER__PORT" in result.output


def test_python_dash_m_bot_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--help"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert result.returncode == 0
    for command in ("serve", "demo", "sandbox", "check", "sync", "tick", "db"):
        assert command in result.stdout


@pytest.mark.parametrize("flag", ["--host", "--port"])
def test_serve_has_host_and_port_flags(flag: str) -> None:
    result = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "120"})
    assert flag in result.output


def test_serve_lowers_its_priority_only_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot import cli

    calls: list[int] = []

    def nice(increment: int) -> int:
        calls.append(increment)
        return 10 + increment

    monkeypatch.setattr(os, "nice", nice)
    cli.lower_priority(0)
    assert calls == []
    cli.lower_priority(5)
    assert calls == [5]


def test_server_nice_is_bounded() -> None:
    from bot.config import ConfigError, build_settings

    with pytest.raises(ConfigError, match=r"server\.nice"):
        build_settings({"server": {"nice": 25}}, {}, base_dir=ROOT)


def test_server_role_must_be_one_the_bot_knows() -> None:
    from bot.config import ConfigError, build_settings

    with pytest.raises(ConfigError, match=r"server\.role"):
        build_settings({"server": {"role": "worker"}}, {}, base_dir=ROOT)
    result = runner.invoke(app, ["serve", "--role", "worker"])
    assert result.exit_code == 2
    assert "worker" in result.output
