"""Campaigns in and out: the campaigns file (JSON or YAML) and the Admin protos.

Every way a campaign enters the exchange ends in `validate_campaign`, so the
file, the Admin service and the demo generator obey one set of rules and answer
with the same messages. A typo in a config file must fail loudly rather than be
ignored: unknown keys are errors, types are checked, and decimal USD amounts are
converted to integer micros exactly or refused.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict
from decimal import Context, Decimal, Inexact, InvalidOperation
from pathlib import Path
from typing import Any

import yaml

from exchange.campaigns import (
    MAX_CAP_WINDOW_S,
    Campaign,
    Creative,
    CreativeKind,
    FrequencyCap,
    Targeting,
)
from exchange.errors import BadRequest
from protos.attnx.v1 import admin_pb2

MICROS_PER_USD = 1_000_000
MAX_MICROS = 10**15  # $1e9: far above any real budget, far below int64
_MAX_USD = MAX_MICROS // MICROS_PER_USD
_MAX_INT32 = 2**31 - 1  # sizes and durations travel as proto int32

_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ID_RULE = "must be at most 64 characters of letters, digits, '-', '_' or '.'"
_COUNTRY_RE = re.compile(r"[A-Z]{3}")
_KIND_WORDS = "banner, video or native"
_KIND_RULE = f"must be {_KIND_WORDS}"
_USD_RULE = 'must be a decimal amount of USD like "4.25"'

_KIND_NAMES = {
    CreativeKind.BANNER: "banner",
    CreativeKind.VIDEO: "video",
    CreativeKind.NATIVE: "native",
}
_KINDS_BY_NAME = {name: kind for kind, name in _KIND_NAMES.items()}

_CAMPAIGN_KEYS = (
    "id",
    "advertiser",
    "seat",
    "adomain",
    "bundle",
    "paused",
    "acpm_micros",
    "acpm",
    "daily_budget_micros",
    "daily_budget",
    "targeting",
    "creatives",
    "frequency_cap",
)
_CREATIVE_KEYS = ("id", "kind", "w", "h", "mime", "duration", "adm", "cat")
_TARGETING_KEYS = ("cat", "country", "devicetype")
_CAP_KEYS = ("count", "window_s")

# Raises Inexact instead of rounding, so sub-micro digits can never vanish.
_EXACT = Context(traps=[Inexact])
_MISSING: Any = object()
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


# --- validation ---------------------------------------------------------------


def validate_campaign(c: Campaign, path: str = "campaign") -> None:
    """Raise BadRequest naming the first field of `c` that breaks a rule."""
    _check_id(c.id, f"{path}.id")
    _check_required(c.advertiser, f"{path}.advertiser")
    _check_required(c.seat, f"{path}.seat")
    _check_non_empty_items(c.adomain, f"{path}.adomain", allow_empty_list=False)
    if not c.creatives:
        raise BadRequest(f"{path}.creatives", "must not be empty")
    for i, creative in enumerate(c.creatives):
        _validate_creative(creative, f"{path}.creatives[{i}]")
    _check_unique((cr.id for cr in c.creatives), f"{path}.creatives")
    _check_micros(c.acpm_micros, f"{path}.acpm_micros")
    _check_micros(c.daily_budget_micros, f"{path}.daily_budget_micros")
    _validate_targeting(c.targeting, f"{path}.targeting")
    if c.frequency_cap is not None:
        cap = c.frequency_cap
        if not 1 <= cap.count <= 1000:
            raise BadRequest(f"{path}.frequency_cap.count", "must be from 1 to 1000")
        if not 1 <= cap.window_s <= MAX_CAP_WINDOW_S:
            raise BadRequest(
                f"{path}.frequency_cap.window_s", f"must be from 1 to {MAX_CAP_WINDOW_S} (30 days)"
            )


def _validate_creative(cr: Creative, path: str) -> None:
    _check_id(cr.id, f"{path}.id")
    if cr.kind not in _KIND_NAMES:
        raise BadRequest(f"{path}.kind", _KIND_RULE)
    # Native ads are laid out by the publisher, so their size may be 0x0.
    sized = cr.kind != CreativeKind.NATIVE
    _check_dimension(cr.w, f"{path}.w", positive=sized)
    _check_dimension(cr.h, f"{path}.h", positive=sized)
    if cr.kind == CreativeKind.VIDEO:
        if not cr.mime:
            raise BadRequest(f"{path}.mime", "is required for video")
        if cr.duration <= 0:
            raise BadRequest(f"{path}.duration", "must be positive for video")
    _check_dimension(cr.duration, f"{path}.duration", positive=False)
    _check_non_empty_items(cr.cat, f"{path}.cat")


def _validate_targeting(t: Targeting, path: str) -> None:
    _check_non_empty_items(t.cat, f"{path}.cat")
    for i, country in enumerate(t.country):
        if not _COUNTRY_RE.fullmatch(country):
            raise BadRequest(
                f"{path}.country[{i}]",
                f'"{country}" must be an ISO-3166-1 alpha-3 code like "USA"',
            )
    for i, devicetype in enumerate(t.devicetype):
        if not 1 <= devicetype <= 7:
            raise BadRequest(f"{path}.devicetype[{i}]", "must be between 1 and 7")


def _check_required(value: str, path: str) -> None:
    if not value:
        raise BadRequest(path, "is required")


def _check_id(value: str, path: str) -> None:
    _check_required(value, path)
    if not _ID_RE.fullmatch(value):
        raise BadRequest(path, _ID_RULE)


def _check_non_empty_items(items: list[str], path: str, *, allow_empty_list: bool = True) -> None:
    if not items and not allow_empty_list:
        raise BadRequest(path, "must not be empty")
    for i, item in enumerate(items):
        if not item:
            raise BadRequest(f"{path}[{i}]", "must not be empty")


def _check_dimension(value: int, path: str, *, positive: bool) -> None:
    if positive and value <= 0:
        raise BadRequest(path, "must be positive")
    if value < 0:
        raise BadRequest(path, "must not be negative")
    if value > _MAX_INT32:
        raise BadRequest(path, f"must be at most {_MAX_INT32}")


def _check_micros(value: int, path: str) -> None:
    if value <= 0:
        raise BadRequest(path, "must be positive")
    if value > MAX_MICROS:
        raise BadRequest(path, f"must be at most {MAX_MICROS}")


def _check_unique(ids: Iterable[str], path: str) -> None:
    """Ids within a list must differ: they key state, reports and bid responses."""
    seen: set[str] = set()
    for i, id_ in enumerate(ids):
        if id_ in seen:
            raise BadRequest(f"{path}[{i}].id", f'"{id_}" is not unique')
        seen.add(id_)


# --- file format: dicts -------------------------------------------------------


def campaign_from_dict(d: object, path: str) -> Campaign:
    """Read one campaign of the campaigns file; every error names its key path."""
    obj = _object(d, path, _CAMPAIGN_KEYS)
    campaign = Campaign(
        id=_read(obj, path, "id", _is_str, "a string"),
        advertiser=_read(obj, path, "advertiser", _is_str, "a string"),
        seat=_read(obj, path, "seat", _is_str, "a string"),
        adomain=_read_strings(obj, path, "adomain"),
        bundle=_read(obj, path, "bundle", _is_str, "a string", default=""),
        paused=_read(obj, path, "paused", _is_bool, "true or false", default=False),
        acpm_micros=_read_money(obj, path, "acpm"),
        daily_budget_micros=_read_money(obj, path, "daily_budget"),
        targeting=_targeting_from_dict(obj.get("targeting", {}), _join(path, "targeting")),
        creatives=[
            _creative_from_dict(item, f"{path}.creatives[{i}]")
            for i, item in enumerate(_read(obj, path, "creatives", _is_list, "a list"))
        ],
        frequency_cap=_cap_from_dict(obj.get("frequency_cap"), _join(path, "frequency_cap")),
    )
    validate_campaign(campaign, path)
    return campaign


def campaign_to_dict(c: Campaign) -> dict[str, Any]:
    """The file form of `c`: micros, kind as a word, every field spelled out."""
    return {
        "id": c.id,
        "advertiser": c.advertiser,
        "seat": c.seat,
        "adomain": list(c.adomain),
        "bundle": c.bundle,
        "paused": c.paused,
        "acpm_micros": c.acpm_micros,
        "daily_budget_micros": c.daily_budget_micros,
        "targeting": {
            "cat": list(c.targeting.cat),
            "country": list(c.targeting.country),
            "devicetype": list(c.targeting.devicetype),
        },
        "creatives": [_creative_to_dict(cr) for cr in c.creatives],
        **({"frequency_cap": asdict(c.frequency_cap)} if c.frequency_cap else {}),
    }


def _cap_from_dict(d: object, path: str) -> FrequencyCap | None:
    if d is None:
        return None
    obj = _object(d, path, _CAP_KEYS)
    return FrequencyCap(
        count=_read(obj, path, "count", _is_int, "an integer"),
        window_s=_read(obj, path, "window_s", _is_int, "an integer"),
    )


def usd_to_micros(amount: object, path: str) -> int:
    """Convert a decimal USD amount (string or number) to micros, exactly or not at all."""
    if isinstance(amount, bool) or not isinstance(amount, str | int | float | Decimal):
        raise BadRequest(path, _USD_RULE)
    try:
        # str() of a float is its shortest repr: the digits the author wrote.
        value = Decimal(str(amount))
    except InvalidOperation:
        raise BadRequest(path, _USD_RULE) from None
    if not value.is_finite():
        raise BadRequest(path, _USD_RULE)
    if value <= 0:
        raise BadRequest(path, "must be positive")
    if value > _MAX_USD:
        raise BadRequest(path, f"must be at most {_MAX_USD}")
    try:
        micros = value.scaleb(6, context=_EXACT)
        whole = micros == micros.to_integral_value()
    except Inexact:
        whole = False
    if not whole:
        raise BadRequest(path, "must have at most 6 decimal places (a micro of USD)")
    return int(micros)


def _creative_from_dict(d: object, path: str) -> Creative:
    obj = _object(d, path, _CREATIVE_KEYS)
    kind = _read(obj, path, "kind", lambda v: _is_str(v) and v in _KINDS_BY_NAME, _KIND_WORDS)
    return Creative(
        id=_read(obj, path, "id", _is_str, "a string"),
        kind=_KINDS_BY_NAME[kind],
        w=_read(obj, path, "w", _is_int, "an integer", default=0),
        h=_read(obj, path, "h", _is_int, "an integer", default=0),
        mime=_read(obj, path, "mime", _is_str, "a string", default=""),
        duration=_read(obj, path, "duration", _is_int, "an integer", default=0),
        adm=_read(obj, path, "adm", _is_str, "a string", default=""),
        cat=_read_strings(obj, path, "cat", default=()),
    )


def _creative_to_dict(cr: Creative) -> dict[str, Any]:
    return {
        "id": cr.id,
        "kind": _KIND_NAMES[cr.kind],
        "w": cr.w,
        "h": cr.h,
        "mime": cr.mime,
        "duration": cr.duration,
        "adm": cr.adm,
        "cat": list(cr.cat),
    }


def _targeting_from_dict(d: object, path: str) -> Targeting:
    obj = _object(d, path, _TARGETING_KEYS)
    return Targeting(
        cat=_read_strings(obj, path, "cat", default=()),
        country=_read_strings(obj, path, "country", default=()),
        devicetype=[
            _checked(v, f"{path}.devicetype[{i}]", _is_int, "an integer")
            for i, v in enumerate(_read(obj, path, "devicetype", _is_list, "a list", default=()))
        ],
    )


def _read_money(obj: dict[str, Any], path: str, name: str) -> int:
    """`<name>_micros` as an integer, or `<name>` as decimal USD; never both."""
    micros_key = f"{name}_micros"
    if name in obj and micros_key in obj:
        raise BadRequest(_join(path, name), f"and {micros_key} are both given; keep one")
    if name in obj:
        return usd_to_micros(obj[name], _join(path, name))
    return _read(obj, path, micros_key, _is_int, "an integer")


def _read_strings(
    obj: dict[str, Any], path: str, key: str, default: Iterable[str] = _MISSING
) -> list[str]:
    items = _read(obj, path, key, _is_list, "a list", default=default)
    return [
        _checked(v, f"{_join(path, key)}[{i}]", _is_str, "a string") for i, v in enumerate(items)
    ]


def _read(
    obj: dict[str, Any],
    path: str,
    key: str,
    check: Callable[[object], bool],
    what: str,
    default: Any = _MISSING,
) -> Any:
    """obj[key] if it passes `check`; `default` when absent; else a BadRequest."""
    if key not in obj:
        if default is _MISSING:
            raise BadRequest(_join(path, key), "is required")
        return default
    return _checked(obj[key], _join(path, key), check, what)


def _checked(value: object, path: str, check: Callable[[object], bool], what: str) -> Any:
    if not check(value):
        raise BadRequest(path, f"must be {what}")
    return value


def _object(d: object, path: str, known: tuple[str, ...]) -> dict[str, Any]:
    """`d` as a dict whose keys are all known: a misspelt key must not be ignored."""
    obj = _checked(d, path, _is_dict, "an object")
    for key in obj:
        if key not in known:
            raise BadRequest(_join(path, str(key)), _unknown_key_rule(str(key), known))
    return obj


def _unknown_key_rule(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"is not a known field (did you mean {close[0]}?)"
    return f"is not a known field (known: {', '.join(known)})"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_str(v: object) -> bool:
    return isinstance(v, str)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_bool(v: object) -> bool:
    return isinstance(v, bool)


def _is_list(v: object) -> bool:
    return isinstance(v, list)


def _is_dict(v: object) -> bool:
    return isinstance(v, dict)


# --- files --------------------------------------------------------------------


def load_campaigns(path: Path) -> list[Campaign]:
    """Read and validate a campaigns file; messages name `campaigns[i]...`."""
    doc = _parse(path, _suffix(path), _read_text(path))
    if isinstance(doc, dict):
        doc = _read(_object(doc, "", ("campaigns",)), "", "campaigns", _is_list, "a list")
    items = _checked(
        doc, str(path), _is_list, 'a list of campaigns, or an object with a "campaigns" list'
    )
    campaigns = [campaign_from_dict(item, f"campaigns[{i}]") for i, item in enumerate(items)]
    _check_unique((c.id for c in campaigns), "campaigns")
    return campaigns


def save_campaigns(path: Path, campaigns: Iterable[Campaign]) -> None:
    """Write JSON or YAML by suffix; atomically, so a reader never sees half a file."""
    doc = {"campaigns": [campaign_to_dict(c) for c in campaigns]}
    if _suffix(path) == ".json":
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    else:
        text = yaml.dump(doc, Dumper=_YAML_DUMPER, sort_keys=False, allow_unicode=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise BadRequest(str(path), "must end in .json, .yaml or .yml")
    return suffix


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadRequest(
            str(path),
            "does not exist; create it, or write a demo set with "
            f"`python -m exchange.demo --out {path}`",
        ) from None
    except (OSError, UnicodeError) as e:
        raise BadRequest(str(path), f"cannot be read as UTF-8 text ({e}); check the file") from e


def _parse(path: Path, suffix: str, text: str) -> object:
    """JSON numbers become Decimal so `"acpm": 4.25` converts exactly."""
    if suffix == ".json":
        try:
            return json.loads(text, parse_float=Decimal)
        except json.JSONDecodeError as e:
            raise BadRequest(
                str(path),
                f"is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}; "
                "fix it and reload",
            ) from None
    try:
        return yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as e:
        raise BadRequest(
            str(path), f"is not valid YAML: {_yaml_problem(e)}; fix it and reload"
        ) from None


def _yaml_problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    if mark is None:
        return problem
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"


# --- Admin protos -------------------------------------------------------------


def campaign_from_proto(msg: admin_pb2.Campaign) -> Campaign:
    """An Admin `Campaign` as the exchange's dataclass, validated (path `campaign`)."""
    campaign = Campaign(
        id=msg.id,
        advertiser=msg.advertiser,
        adomain=list(msg.adomain),
        seat=msg.seat,
        creatives=[
            _creative_from_proto(m, f"campaign.creatives[{i}]") for i, m in enumerate(msg.creatives)
        ],
        acpm_micros=msg.acpm_micros,
        daily_budget_micros=msg.daily_budget_micros,
        targeting=Targeting(
            cat=list(msg.targeting.cat),
            country=list(msg.targeting.country),
            devicetype=list(msg.targeting.devicetype),
        ),
        bundle=msg.bundle,
        paused=msg.paused,
        frequency_cap=FrequencyCap(msg.frequency_cap.count, msg.frequency_cap.window_s)
        if msg.HasField("frequency_cap")
        else None,
    )
    validate_campaign(campaign)
    return campaign


def campaign_to_proto(c: Campaign) -> admin_pb2.Campaign:
    return admin_pb2.Campaign(
        id=c.id,
        advertiser=c.advertiser,
        adomain=c.adomain,
        seat=c.seat,
        bundle=c.bundle,
        creatives=[_creative_to_proto(cr) for cr in c.creatives],
        acpm_micros=c.acpm_micros,
        daily_budget_micros=c.daily_budget_micros,
        targeting=admin_pb2.Targeting(
            cat=c.targeting.cat, country=c.targeting.country, devicetype=c.targeting.devicetype
        ),
        paused=c.paused,
        frequency_cap=admin_pb2.FrequencyCap(
            count=c.frequency_cap.count, window_s=c.frequency_cap.window_s
        )
        if c.frequency_cap
        else None,
    )


def _creative_from_proto(m: admin_pb2.Creative, path: str) -> Creative:
    try:
        kind = CreativeKind(m.kind)  # UNSPECIFIED (0) has no CreativeKind
    except ValueError:
        raise BadRequest(f"{path}.kind", _KIND_RULE) from None
    return Creative(
        id=m.id,
        kind=kind,
        w=m.w,
        h=m.h,
        mime=m.mime,
        duration=m.duration,
        adm=m.adm,
        cat=list(m.cat),
    )


def _creative_to_proto(cr: Creative) -> admin_pb2.Creative:
    return admin_pb2.Creative(
        id=cr.id,
        kind=int(cr.kind),
        w=cr.w,
        h=cr.h,
        mime=cr.mime,
        duration=cr.duration,
        adm=cr.adm,
        cat=cr.cat,
    )
