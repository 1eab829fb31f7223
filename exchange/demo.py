"""A generated, realistic-looking demo set of campaigns.

The exchange, the load tests and the simulator need a market to trade in
without anyone's real data: this one is made from a seeded numpy Generator, so
the same seed always gives the same campaigns. It is shaped so a typical
request (site cat IAB1, country USA, devicetype 2, banner 300x250) finds well
over a hundred eligible campaigns, enough for the auction to have real work.

    python -m exchange.demo --out campaigns.yaml [--n 400] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TypeVar

import numpy as np

from exchange.campaign_io import save_campaigns
from exchange.campaigns import Campaign, Creative, CreativeKind, Targeting

N_ADVERTISERS = 60

# IAB content taxonomy 2.x tier-1 codes plus a few tier-2 ones. IAB25/IAB26
# (non-standard and illegal content) are left out: nobody targets or sells them.
CATEGORIES = [f"IAB{i}" for i in range(1, 25)] + [
    "IAB1-6",
    "IAB2-3",
    "IAB9-30",
    "IAB12-2",
    "IAB17-12",
    "IAB19-6",
    "IAB20-18",
]
COUNTRIES = ["USA", "GBR", "DEU", "FRA", "CAN", "AUS", "JPN", "BRA", "IND"]
DEVICE_TYPES = [1, 2, 3, 4, 5, 6, 7]  # OpenRTB 2.6 list 5.21
BANNER_SIZES = [
    (300, 250),
    (728, 90),
    (320, 50),
    (300, 600),
    (160, 600),
    (970, 250),
    (320, 480),
    (336, 280),
]
VIDEO_SIZES = [(640, 360), (1280, 720)]
VIDEO_DURATIONS = [6, 15, 30]

_ONSETS = ["v", "l", "n", "m", "k", "t", "s", "r", "b", "d", "z", "c", "br", "tr", "fl", "qu"]
_VOWELS = ["a", "e", "i", "o", "u", "a", "o", "ae", "io"]
_CODAS = ["ra", "lo", "na", "ix", "on", "ly", "va", "ro", "ex", "um", "is", "en"]

# Share of campaigns with each trait; chosen so the typical request above finds
# about half the campaigns carrying a 300x250 and most of those admitting it.
P_BANNER = 0.8
P_MEDIUM_RECTANGLE = 0.7  # of banner campaigns: the 300x250, the most sold size
P_VIDEO = 0.3
P_NATIVE = 0.2
P_TARGETED = 0.4
P_PAUSED = 0.05
P_APP_ADVERTISER = 0.15

T = TypeVar("T")


def demo_campaigns(n: int = 400, seed: int = 7) -> list[Campaign]:
    """`n` valid campaigns drawn deterministically from `seed`."""
    rng = np.random.default_rng(seed)
    advertisers = _advertiser_names(rng, N_ADVERTISERS)
    verticals = {name: _pick(rng, CATEGORIES, 1, 2) for name in advertisers}
    apps = {name: f"com.{name}.app" for name in advertisers if rng.random() < P_APP_ADVERTISER}
    # A few big spenders run many campaigns, most run a handful.
    weights = rng.lognormal(0.0, 0.8, size=len(advertisers))
    owners = rng.choice(len(advertisers), size=n, p=weights / weights.sum())
    counts: dict[str, int] = {}
    campaigns = []
    for owner in owners:
        name = advertisers[int(owner)]
        counts[name] = counts.get(name, 0) + 1
        campaign_id = f"{name}-{counts[name]:03d}"
        campaigns.append(
            Campaign(
                id=campaign_id,
                advertiser=name.capitalize(),
                adomain=[f"{name}.example"],
                seat=f"seat-{name}",
                creatives=_creatives(rng, campaign_id, name, verticals[name]),
                acpm_micros=_acpm_micros(rng),
                daily_budget_micros=_daily_budget_micros(rng),
                targeting=_targeting(rng),
                bundle=apps.get(name, ""),
                paused=bool(rng.random() < P_PAUSED),
            )
        )
    return campaigns


def _advertiser_names(rng: np.random.Generator, count: int) -> list[str]:
    """Brand-like made-up words such as "velora", unique."""
    names: list[str] = []
    while len(names) < count:
        syllables = [
            _choice(rng, _ONSETS) + _choice(rng, _VOWELS) for _ in range(rng.integers(1, 3))
        ]
        name = "".join(syllables) + _choice(rng, _CODAS)
        if name not in names:
            names.append(name)
    return names


def _creatives(
    rng: np.random.Generator, campaign_id: str, name: str, cat: list[str]
) -> list[Creative]:
    creatives = []
    if rng.random() < P_BANNER:
        sizes = _pick(rng, BANNER_SIZES[1:], 0, 2)
        if rng.random() < P_MEDIUM_RECTANGLE:
            sizes.insert(0, BANNER_SIZES[0])
        creatives += [_banner(campaign_id, name, w, h, cat) for w, h in sizes]
    if rng.random() < P_VIDEO:
        w, h = _choice(rng, VIDEO_SIZES)
        creatives.append(_video(campaign_id, name, w, h, _choice(rng, VIDEO_DURATIONS), cat))
    if rng.random() < P_NATIVE or not creatives:
        creatives.append(_native(campaign_id, name, cat))
    return creatives


def _banner(campaign_id: str, name: str, w: int, h: int, cat: list[str]) -> Creative:
    crid = f"{campaign_id}-b{w}x{h}"
    adm = (
        f'<div class="attnx-ad" data-crid="{crid}" style="width:{w}px;height:{h}px">'
        f'<a href="https://{name}.example/">{name.capitalize()}</a></div>'
    )
    return Creative(id=crid, kind=CreativeKind.BANNER, w=w, h=h, adm=adm, cat=list(cat))


def _video(campaign_id: str, name: str, w: int, h: int, duration: int, cat: list[str]) -> Creative:
    crid = f"{campaign_id}-v{duration}s"
    adm = (
        f'<VAST version="4.0"><Ad id="{crid}"><InLine>'
        f"<AdSystem>AttnX demo</AdSystem><AdTitle>{name.capitalize()}</AdTitle>"
        f"<AdServingId>{crid}</AdServingId>"
        f"<Impression><![CDATA[https://{name}.example/imp]]></Impression>"
        f'<Creatives><Creative id="{crid}"><Linear>'
        f"<Duration>00:00:{duration:02d}</Duration><MediaFiles>"
        f'<MediaFile delivery="progressive" type="video/mp4" width="{w}" height="{h}">'
        f"<![CDATA[https://cdn.{name}.example/{crid}.mp4]]></MediaFile>"
        "</MediaFiles></Linear></Creative></Creatives></InLine></Ad></VAST>"
    )
    return Creative(
        id=crid,
        kind=CreativeKind.VIDEO,
        w=w,
        h=h,
        mime="video/mp4",
        duration=duration,
        adm=adm,
        cat=list(cat),
    )


def _native(campaign_id: str, name: str, cat: list[str]) -> Creative:
    crid = f"{campaign_id}-native"
    brand = name.capitalize()
    native = {
        "native": {
            "ver": "1.2",
            "assets": [
                {"id": 1, "title": {"text": f"Discover {brand}"}},
                {
                    "id": 2,
                    "img": {"url": f"https://cdn.{name}.example/{crid}.jpg", "w": 1200, "h": 627},
                },
                {"id": 3, "data": {"value": brand}},
            ],
            "link": {"url": f"https://{name}.example/"},
        }
    }
    adm = json.dumps(native, separators=(",", ":"))
    return Creative(id=crid, kind=CreativeKind.NATIVE, adm=adm, cat=list(cat))


def _acpm_micros(rng: np.random.Generator) -> int:
    """Log-normal aCPM around $3.50 (most within $1-$12), in whole thousands of micros.

    The bounds are far out in the tails, so few campaigns sit on them: a pile-up
    at a cap would make exact ties (and own-bid prices) common in the demo.
    """
    millis = round(float(rng.lognormal(np.log(3500), 0.55)))
    return min(max(millis, 500), 40_000) * 1_000


def _daily_budget_micros(rng: np.random.Generator) -> int:
    """$50-$5000 a day, log-uniform, in whole dollars."""
    dollars = round(float(np.exp(rng.uniform(np.log(50), np.log(5000)))))
    return min(max(dollars, 50), 5000) * 1_000_000


def _targeting(rng: np.random.Generator) -> Targeting:
    """Most campaigns buy everything; the rest narrow one to three dimensions."""
    if rng.random() >= P_TARGETED:
        return Targeting()
    dims = _pick(rng, ["cat", "country", "devicetype"], 1, 3)
    return Targeting(
        cat=_pick(rng, CATEGORIES, 1, 4) if "cat" in dims else [],
        country=_pick(rng, COUNTRIES, 1, 3) if "country" in dims else [],
        devicetype=_pick(rng, DEVICE_TYPES, 1, 3) if "devicetype" in dims else [],
    )


def _pick(rng: np.random.Generator, items: list[T], low: int, high: int) -> list[T]:
    """Between `low` and `high` distinct items, in list order (plain Python values)."""
    k = int(rng.integers(low, high + 1))
    return [items[i] for i in sorted(rng.choice(len(items), size=k, replace=False))]


def _choice(rng: np.random.Generator, items: list[T]) -> T:
    return items[int(rng.integers(len(items)))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a generated demo campaigns file.")
    parser.add_argument(
        "--out", type=Path, required=True, help="file to write (.json, .yaml, .yml)"
    )
    parser.add_argument("--n", type=int, default=400, help="number of campaigns (default 400)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    args = parser.parse_args(argv)
    campaigns = demo_campaigns(args.n, args.seed)
    save_campaigns(args.out, campaigns)
    print(f"wrote {len(campaigns)} campaigns to {args.out}")


if __name__ == "__main__":
    main()
