"""Campaign validation, the campaigns file, the Admin protos and the demo set."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from exchange.campaign_io import (
    campaign_from_dict,
    campaign_from_proto,
    campaign_to_dict,
    campaign_to_proto,
    load_campaigns,
    save_campaigns,
    usd_to_micros,
    validate_campaign,
)
from exchange.campaigns import Campaign, Creative, CreativeKind, FrequencyCap, Targeting
from exchange.demo import demo_campaigns, main
from exchange.errors import BadRequest
from protos.attnx.v1 import admin_pb2


def make_campaign() -> Campaign:
    return Campaign(
        id="velora-001",
        advertiser="Velora",
        adomain=["velora.example"],
        seat="seat-velora",
        creatives=[
            Creative(id="b1", kind=CreativeKind.BANNER, w=300, h=250, adm="<div>b1</div>"),
            Creative(
                id="v1",
                kind=CreativeKind.VIDEO,
                w=640,
                h=360,
                mime="video/mp4",
                duration=15,
                adm="<VAST/>",
                cat=["IAB2"],
            ),
            Creative(id="n1", kind=CreativeKind.NATIVE, adm="{}"),
        ],
        acpm_micros=4_000_000,
        daily_budget_micros=500_000_000,
        targeting=Targeting(cat=["IAB1"], country=["USA"], devicetype=[2]),
        bundle="com.velora.app",
        frequency_cap=FrequencyCap(count=3, window_s=86_400),
    )


def _set(attr: str, value: object) -> Callable[[Campaign], None]:
    def mutate(c: Campaign) -> None:
        target: object = c
        *parents, last = attr.split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else getattr(target, part)
        setattr(target, last, value)

    return mutate


# (mutation of a valid campaign, exact message it must produce)
RULES = [
    (_set("id", ""), "campaign.id is required"),
    (
        _set("id", "x" * 65),
        "campaign.id must be at most 64 characters of letters, digits, '-', '_' or '.'",
    ),
    (
        _set("id", "has space"),
        "campaign.id must be at most 64 characters of letters, digits, '-', '_' or '.'",
    ),
    (_set("advertiser", ""), "campaign.advertiser is required"),
    (_set("seat", ""), "campaign.seat is required"),
    (_set("adomain", []), "campaign.adomain must not be empty"),
    (_set("adomain", [""]), "campaign.adomain[0] must not be empty"),
    (_set("creatives", []), "campaign.creatives must not be empty"),
    (_set("creatives.1.id", "b1"), 'campaign.creatives[1].id "b1" is not unique'),
    (_set("creatives.0.id", ""), "campaign.creatives[0].id is required"),
    (_set("creatives.0.w", 0), "campaign.creatives[0].w must be positive"),
    (_set("creatives.0.h", -1), "campaign.creatives[0].h must be positive"),
    (_set("creatives.1.w", 0), "campaign.creatives[1].w must be positive"),
    (_set("creatives.2.w", -5), "campaign.creatives[2].w must not be negative"),
    (_set("creatives.1.mime", ""), "campaign.creatives[1].mime is required for video"),
    (_set("creatives.1.duration", 0), "campaign.creatives[1].duration must be positive for video"),
    (_set("creatives.1.cat", [""]), "campaign.creatives[1].cat[0] must not be empty"),
    (_set("acpm_micros", 0), "campaign.acpm_micros must be positive"),
    (_set("acpm_micros", 10**15 + 1), "campaign.acpm_micros must be at most 1000000000000000"),
    (_set("daily_budget_micros", -1), "campaign.daily_budget_micros must be positive"),
    (
        _set("daily_budget_micros", 10**15 + 1),
        "campaign.daily_budget_micros must be at most 1000000000000000",
    ),
    (
        _set("targeting.devicetype", [2, 8]),
        "campaign.targeting.devicetype[1] must be between 1 and 7",
    ),
    (_set("targeting.devicetype", [0]), "campaign.targeting.devicetype[0] must be between 1 and 7"),
    (
        _set("targeting.country", ["us"]),
        'campaign.targeting.country[0] "us" must be an ISO-3166-1 alpha-3 code like "USA"',
    ),
    (
        _set("targeting.country", ["USA", "US"]),
        'campaign.targeting.country[1] "US" must be an ISO-3166-1 alpha-3 code like "USA"',
    ),
    (_set("targeting.cat", [""]), "campaign.targeting.cat[0] must not be empty"),
    (
        _set("frequency_cap", FrequencyCap(0, 60)),
        "campaign.frequency_cap.count must be from 1 to 1000",
    ),
    (
        _set("frequency_cap", FrequencyCap(2, 0)),
        "campaign.frequency_cap.window_s must be from 1 to 2592000 (30 days)",
    ),
]
RULE_IDS = [message for _, message in RULES]


def broken(mutate: Callable[[Campaign], None]) -> Campaign:
    c = copy.deepcopy(make_campaign())
    mutate(c)
    return c


def test_valid_campaign_passes_every_route() -> None:
    c = make_campaign()
    validate_campaign(c)
    assert campaign_from_dict(campaign_to_dict(c), "campaign") == c
    assert campaign_from_proto(campaign_to_proto(c)) == c


@pytest.mark.parametrize(("mutate", "message"), RULES, ids=RULE_IDS)
def test_rule_messages_from_validate(mutate: Callable[[Campaign], None], message: str) -> None:
    with pytest.raises(BadRequest) as e:
        validate_campaign(broken(mutate))
    assert str(e.value) == message


@pytest.mark.parametrize(("mutate", "message"), RULES, ids=RULE_IDS)
def test_rule_messages_from_dict(mutate: Callable[[Campaign], None], message: str) -> None:
    with pytest.raises(BadRequest) as e:
        campaign_from_dict(campaign_to_dict(broken(mutate)), "campaign")
    assert str(e.value) == message


@pytest.mark.parametrize(("mutate", "message"), RULES, ids=RULE_IDS)
def test_rule_messages_from_proto(mutate: Callable[[Campaign], None], message: str) -> None:
    with pytest.raises(BadRequest) as e:
        campaign_from_proto(campaign_to_proto(broken(mutate)))
    assert str(e.value) == message


def test_dict_paths_follow_the_given_path() -> None:
    d = campaign_to_dict(broken(_set("creatives.0.w", 0)))
    with pytest.raises(BadRequest, match=r"^campaigns\[3\]\.creatives\[0\]\.w must be positive$"):
        campaign_from_dict(d, "campaigns[3]")


def test_unknown_kind_from_dict() -> None:
    d = campaign_to_dict(make_campaign())
    d["creatives"][0]["kind"] = "audio"
    with pytest.raises(BadRequest) as e:
        campaign_from_dict(d, "campaign")
    assert str(e.value) == "campaign.creatives[0].kind must be banner, video or native"


def test_unspecified_kind_from_proto() -> None:
    msg = campaign_to_proto(make_campaign())
    msg.creatives[0].kind = admin_pb2.CREATIVE_KIND_UNSPECIFIED
    with pytest.raises(BadRequest) as e:
        campaign_from_proto(msg)
    assert str(e.value) == "campaign.creatives[0].kind must be banner, video or native"


def test_unknown_kind_in_dataclass() -> None:
    c = make_campaign()
    c.creatives[0].kind = 0  # type: ignore[assignment]
    with pytest.raises(BadRequest, match=r"kind must be banner, video or native$"):
        validate_campaign(c)


def put(d: dict, keys: tuple, value: object) -> None:
    """Set d[k0][k1]...[kn] = value."""
    *parents, last = keys
    for key in parents:
        d = d[key]
    d[last] = value


@pytest.mark.parametrize(
    ("keys", "value", "message"),
    [
        (("creatives", 0, "w"), "300", "campaigns[3].creatives[0].w must be an integer"),
        (("creatives", 0, "w"), True, "campaigns[3].creatives[0].w must be an integer"),
        (
            ("creatives", 1, "duration"),
            15.0,
            "campaigns[3].creatives[1].duration must be an integer",
        ),
        (("creatives", 0, "cat"), "IAB1", "campaigns[3].creatives[0].cat must be a list"),
        (("creatives", 0), "b1", "campaigns[3].creatives[0] must be an object"),
        (("creatives",), {}, "campaigns[3].creatives must be a list"),
        (("id",), 7, "campaigns[3].id must be a string"),
        (("paused",), "no", "campaigns[3].paused must be true or false"),
        (("adomain",), ["a.example", 1], "campaigns[3].adomain[1] must be a string"),
        (("acpm_micros",), 4.0, "campaigns[3].acpm_micros must be an integer"),
        (("targeting",), None, "campaigns[3].targeting must be an object"),
        (
            ("targeting", "devicetype"),
            ["2"],
            "campaigns[3].targeting.devicetype[0] must be an integer",
        ),
        (("targeting", "country"), [False], "campaigns[3].targeting.country[0] must be a string"),
    ],
)
def test_type_errors_name_the_path(keys: tuple, value: object, message: str) -> None:
    d = campaign_to_dict(make_campaign())
    put(d, keys, value)
    with pytest.raises(BadRequest) as e:
        campaign_from_dict(d, "campaigns[3]")
    assert str(e.value) == message


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ("id", "campaigns[0].id is required"),
        ("seat", "campaigns[0].seat is required"),
        ("creatives", "campaigns[0].creatives is required"),
        ("acpm_micros", "campaigns[0].acpm_micros is required"),
        ("daily_budget_micros", "campaigns[0].daily_budget_micros is required"),
    ],
)
def test_missing_required_keys(drop: str, message: str) -> None:
    d = campaign_to_dict(make_campaign())
    del d[drop]
    with pytest.raises(BadRequest) as e:
        campaign_from_dict(d, "campaigns[0]")
    assert str(e.value) == message


def test_optional_keys_default() -> None:
    d = campaign_to_dict(make_campaign())
    for key in ("bundle", "paused", "targeting"):
        del d[key]
    d["creatives"] = [{"id": "n1", "kind": "native"}]
    c = campaign_from_dict(d, "campaigns[0]")
    assert (c.bundle, c.paused, c.targeting) == ("", False, Targeting())
    assert c.creatives == [Creative(id="n1", kind=CreativeKind.NATIVE)]


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (("budget",), "campaigns[0].budget is not a known field (did you mean daily_budget?)"),
        (
            ("acmp_micros",),
            "campaigns[0].acmp_micros is not a known field (did you mean acpm_micros?)",
        ),
        (
            ("creatives", 0, "durration"),
            "campaigns[0].creatives[0].durration is not a known field (did you mean duration?)",
        ),
        (
            ("targeting", "countries"),
            "campaigns[0].targeting.countries is not a known field (did you mean country?)",
        ),
        (
            ("targeting", "zzz"),
            "campaigns[0].targeting.zzz is not a known field (known: cat, country, devicetype)",
        ),
    ],
)
def test_unknown_keys_are_errors(keys: tuple, message: str) -> None:
    d = campaign_to_dict(make_campaign())
    put(d, keys, 1)
    with pytest.raises(BadRequest) as e:
        campaign_from_dict(d, "campaigns[0]")
    assert str(e.value) == message


# --- money -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "micros"),
    [
        ("4.25", 4_250_000),
        (4.25, 4_250_000),
        (4, 4_000_000),
        ("0.000001", 1),
        ("12.3456780", 12_345_678),
        ("1e3", 1_000_000_000),
        ("1000000000", 10**15),
    ],
)
def test_usd_to_micros_is_exact(amount: object, micros: int) -> None:
    assert usd_to_micros(amount, "x") == micros


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("0.0000001", "acpm must have at most 6 decimal places (a micro of USD)"),
        (
            "1.0000000000000000000000000000001",
            "acpm must have at most 6 decimal places (a micro of USD)",
        ),
        (1e-7, "acpm must have at most 6 decimal places (a micro of USD)"),
        ("$4", 'acpm must be a decimal amount of USD like "4.25"'),
        ("NaN", 'acpm must be a decimal amount of USD like "4.25"'),
        (float("inf"), 'acpm must be a decimal amount of USD like "4.25"'),
        (True, 'acpm must be a decimal amount of USD like "4.25"'),
        (None, 'acpm must be a decimal amount of USD like "4.25"'),
        ("0", "acpm must be positive"),
        ("-1.5", "acpm must be positive"),
        ("1000000000.000001", "acpm must be at most 1000000000"),
        ("1e999999", "acpm must be at most 1000000000"),
    ],
)
def test_usd_to_micros_rejects(amount: object, message: str) -> None:
    with pytest.raises(BadRequest) as e:
        usd_to_micros(amount, "acpm")
    assert str(e.value) == message


def test_decimal_money_keys_in_a_campaign() -> None:
    d = campaign_to_dict(make_campaign())
    del d["acpm_micros"], d["daily_budget_micros"]
    d["acpm"], d["daily_budget"] = "4.25", 1500
    c = campaign_from_dict(d, "campaigns[0]")
    assert (c.acpm_micros, c.daily_budget_micros) == (4_250_000, 1_500_000_000)
    d["acpm"] = "0.0000001"
    with pytest.raises(BadRequest, match=r"^campaigns\[0\]\.acpm must have at most 6 decimal"):
        campaign_from_dict(d, "campaigns[0]")


def test_money_given_twice_is_an_error() -> None:
    d = campaign_to_dict(make_campaign())
    d["acpm"] = "4"
    with pytest.raises(BadRequest) as e:
        campaign_from_dict(d, "campaigns[0]")
    assert str(e.value) == "campaigns[0].acpm and acpm_micros are both given; keep one"


# --- files -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_file_round_trip(tmp_path: Path, suffix: str) -> None:
    campaigns = [make_campaign(), demo_campaigns(3, seed=1)[2]]
    path = tmp_path / f"campaigns{suffix}"
    save_campaigns(path, campaigns)
    assert load_campaigns(path) == campaigns
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind


def test_load_accepts_a_bare_list_and_decimal_json_numbers(tmp_path: Path) -> None:
    d = campaign_to_dict(make_campaign())
    del d["acpm_micros"]
    path = tmp_path / "c.json"
    path.write_text(json.dumps([d]).replace("{", '{"acpm": 4.2500000,', 1))
    [c] = load_campaigns(path)
    assert c.acpm_micros == 4_250_000


def test_load_yaml_with_usd_amounts(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        """
campaigns:
  - id: velora-001
    advertiser: Velora
    seat: seat-velora
    adomain: [velora.example]
    acpm: 4.25
    daily_budget: "250.50"
    targeting: {country: [USA, GBR], devicetype: [2, 4]}
    creatives:
      - {id: b1, kind: banner, w: 300, h: 250, adm: "<div>b1</div>"}
"""
    )
    [c] = load_campaigns(path)
    assert (c.acpm_micros, c.daily_budget_micros) == (4_250_000, 250_500_000)
    assert c.targeting == Targeting(country=["USA", "GBR"], devicetype=[2, 4])


def test_load_names_campaign_index(tmp_path: Path) -> None:
    ds = [campaign_to_dict(make_campaign()) for _ in range(4)]
    for i, d in enumerate(ds):
        d["id"] = f"c{i}"
    ds[3]["creatives"][0]["w"] = "300"
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(ds))
    with pytest.raises(BadRequest) as e:
        load_campaigns(path)
    assert str(e.value) == "campaigns[3].creatives[0].w must be an integer"


def test_duplicate_campaign_ids(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    save_campaigns(path, [make_campaign(), make_campaign()])
    with pytest.raises(BadRequest) as e:
        load_campaigns(path)
    assert str(e.value) == 'campaigns[1].id "velora-001" is not unique'


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(BadRequest) as e:
        load_campaigns(path)
    assert str(e.value) == (
        f"{path} does not exist; create it, or write a demo set with "
        f"`python -m exchange.demo --out {path}`"
    )


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "c.json",
            '{"campaigns": [}',
            "is not valid JSON: Expecting value at line 1, column 16; fix it",
        ),
        ("c.yaml", "campaigns: [a, b\n", "is not valid YAML: "),
        ("c.yaml", "", 'must be a list of campaigns, or an object with a "campaigns" list'),
        ("c.json", '"x"', 'must be a list of campaigns, or an object with a "campaigns" list'),
    ],
)
def test_bad_file_contents(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(BadRequest) as e:
        load_campaigns(path)
    assert str(e.value).startswith(f"{path} {message}")


def test_bad_syntax_points_at_the_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("campaigns:\n  - id: a\n   bad: [\n")
    with pytest.raises(BadRequest, match=r"at line \d+, column \d+; fix it and reload$"):
        load_campaigns(path)


def test_top_level_object_keys_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"campaign": []}')
    with pytest.raises(BadRequest) as e:
        load_campaigns(path)
    assert str(e.value) == "campaign is not a known field (did you mean campaigns?)"


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    with pytest.raises(BadRequest) as e:
        save_campaigns(path, [make_campaign()])
    assert str(e.value) == f"{path} must end in .json, .yaml or .yml"


# --- demo set --------------------------------------------------------------------------


def admits_typical_request(c: Campaign) -> bool:
    """Active, has a 300x250 banner, and admits site cat IAB1 / USA / devicetype 2."""
    t = c.targeting
    return (
        not c.paused
        and any(cr.kind == CreativeKind.BANNER and (cr.w, cr.h) == (300, 250) for cr in c.creatives)
        and (not t.cat or "IAB1" in t.cat)
        and (not t.country or "USA" in t.country)
        and (not t.devicetype or 2 in t.devicetype)
    )


def test_demo_is_deterministic_and_seeded() -> None:
    assert demo_campaigns(50, seed=3) == demo_campaigns(50, seed=3)
    assert demo_campaigns(50, seed=3) != demo_campaigns(50, seed=4)


@pytest.mark.parametrize("seed", [7, 1, 2])
def test_demo_set_is_valid_and_realistic(seed: int) -> None:
    campaigns = demo_campaigns(seed=seed)
    assert len(campaigns) == 400
    for c in campaigns:
        validate_campaign(c)
    assert len({c.id for c in campaigns}) == 400
    assert 40 <= len({c.advertiser for c in campaigns}) <= 60
    assert all(d.endswith(".example") for c in campaigns for d in c.adomain)
    assert all(500_000 <= c.acpm_micros <= 40_000_000 for c in campaigns)
    assert len({c.acpm_micros for c in campaigns}) > 0.9 * len(campaigns)  # few exact ties
    assert all(c.acpm_micros % 1000 == 0 for c in campaigns)
    assert all(50_000_000 <= c.daily_budget_micros <= 5_000_000_000 for c in campaigns)
    kinds = {cr.kind for c in campaigns for cr in c.creatives}
    assert kinds == set(CreativeKind)
    assert sum(admits_typical_request(c) for c in campaigns) >= 100


def test_demo_cli_writes_a_loadable_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "demo.yaml"
    main(["--out", str(path), "--n", "25", "--seed", "5"])
    assert capsys.readouterr().out.strip() == f"wrote 25 campaigns to {path}"
    assert load_campaigns(path) == demo_campaigns(25, seed=5)
