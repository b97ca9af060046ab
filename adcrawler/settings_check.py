"""Typed, validated setting getters: a bad value stops the start-up and names the setting."""

from __future__ import annotations

from scrapy.settings import BaseSettings


class SettingError(ValueError):
    pass


def _number(settings: BaseSettings, name: str, kind: type) -> float:
    raw = settings.get(name)
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise SettingError(f"{name}={raw!r} is not a valid {kind.__name__}") from None


def positive_int(settings: BaseSettings, name: str, allow_zero: bool = False) -> int:
    value = int(_number(settings, name, int))
    if value < 0 or (value == 0 and not allow_zero):
        raise SettingError(f"{name}={value} must be {'>= 0' if allow_zero else '> 0'}")
    return value


def positive_float(settings: BaseSettings, name: str, allow_zero: bool = False) -> float:
    value = float(_number(settings, name, float))
    if not value >= 0 or (value == 0 and not allow_zero):
        raise SettingError(f"{name}={value} must be {'>= 0' if allow_zero else '> 0'}")
    return value
