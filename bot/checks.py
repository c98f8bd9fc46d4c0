"""`bot check`: validate config, calendars and content, reporting file and line of each problem."""

from __future__ import annotations

from pathlib import Path

from bot.config import ConfigError, Settings, load_config
from bot.templates import Templates
from bot.yamlsource import YamlFileError, load_yaml


def check_schedules(folder: Path) -> list[str]:
    """Every calendar file must at least be valid YAML with a mapping at the top."""
    problems: list[str] = []
    if not folder.is_dir():
        return [f"{folder}: schedules folder not found"]
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            doc = load_yaml(path)
        except YamlFileError as exc:
            problems.append(str(exc))
            continue
        if doc.data is not None and not isinstance(doc.data, dict):
            problems.append(f"{path}:1: top level must be a mapping")
    return problems


def check_welcome_templates(settings: Settings, templates: Templates) -> list[str]:
    problems: list[str] = []
    config_file = Path(settings.base_dir) / "config.yaml"
    names = {"welcome.default_template": settings.welcome.default_template}
    names.update({f"welcome.by_state.{k}": v for k, v in settings.welcome.by_state.items()})
    for key, name in names.items():
        if not templates.exists(name):
            problems.append(
                f"{config_file} ({key}): template {name!r} not found in {templates.root}"
            )
    return problems


def run_checks(config: str | Path | None) -> tuple[Settings | None, list[str]]:
    """All problems found, each as 'file:line: message'."""
    try:
        settings = load_config(config)
    except ConfigError as exc:
        return None, list(exc.problems)
    templates = Templates(settings.content_dir())
    problems = [str(p) for p in templates.check()]
    problems += check_welcome_templates(settings, templates)
    problems += check_schedules(settings.schedules_dir())
    return settings, problems
