"""The load tests' traffic: OpenRTB requests drawn from a realistic mix.

Sites and apps, banners of the common sizes and outstream video, users from a pool
(most with a behaviour history, some cold), floors from none to high, and a set
share of invalid requests that the exchange must refuse with a message naming the
field. Every draw is seeded, so two runs send the same traffic. For each bid the
exchange answers, `notices` draws what the publisher's ad server then reports.
"""

from __future__ import annotations

import random

# Of our bids, the publisher's ad server picks 90% (the rest lose to another source);
# 90% of those render and are billed; 60% of the billed are measured by the beacon.
WIN_RATE, RENDER_RATE, BEACON_RATE = 0.9, 0.9, 0.6
LOST_TO_HIGHER_BID = 102  # OpenRTB 2.6 loss reason code
BANNER_SIZES = ((300, 250), (728, 90), (320, 50), (300, 600), (160, 600))
SITES = [(f"site-{i}", f"news{i}.example", cat) for i, cat in enumerate(
    ["IAB12", "IAB17", "IAB19", "IAB3", "IAB1"] * 4)]  # fmt: skip
APPS = [(f"app-{i}", f"com.example.app{i}", cat) for i, cat in enumerate(["IAB9", "IAB1"] * 5)]
COUNTRIES = ("USA", "USA", "USA", "CAN", "GBR", "DEU")
INVALID_FIELD = "request.imp[0].banner.w"  # the error an invalid request must come back with
INVALID_MESSAGE = f"{INVALID_FIELD} must be positive"


class Traffic:
    def __init__(self, seed: int = 0, users: int = 10_000, invalid_rate: float = 0.02) -> None:
        self.rng = random.Random(seed)
        self.users = users
        self.invalid_rate = invalid_rate
        self.sent = 0

    def request(self) -> tuple[dict, bool]:
        """(an OpenRTB request as JSON, whether it is invalid on purpose)."""
        rng = self.rng
        self.sent += 1
        invalid = rng.random() < self.invalid_rate
        imp: dict = {"id": "1", "tagid": f"slot-{rng.randrange(8)}", "exp": 300}
        if rng.random() < 0.15 and not invalid:
            imp["video"] = {"mimes": ["video/mp4"], "w": 640, "h": 360, "minduration": 5,
                            "maxduration": 30, "plcmt": 2}  # fmt: skip
        else:
            w, h = rng.choice(BANNER_SIZES)
            imp["banner"] = {"w": -w if invalid else w, "h": h, "pos": rng.choice((1, 3))}
        if rng.random() < 0.6:
            imp["bidfloor"] = round(rng.choice((0.1, 0.5, 1.0, 2.0, 5.0)), 2)
            imp["bidfloorcur"] = "USD"
        request: dict = {
            "id": f"lt-{rng.getrandbits(64):016x}",
            "imp": [imp],
            "device": {"devicetype": 2, "geo": {"country": rng.choice(COUNTRIES)}},
            "at": 2,
            "tmax": 120,
            "cur": ["USD"],
        }
        if rng.random() < 0.7:
            site_id, domain, cat = rng.choice(SITES)
            request["site"] = {"id": site_id, "domain": domain, "cat": [cat],
                               "publisher": {"id": f"pub-{site_id}"}}  # fmt: skip
        else:
            app_id, bundle, cat = rng.choice(APPS)
            request["app"] = {"id": app_id, "bundle": bundle, "cat": [cat]}
            request["device"]["devicetype"] = 4
        user = rng.randrange(self.users)
        request["user"] = {"id": f"u-{user}"}
        if user % 10:  # 1 in 10 users is cold
            length = rng.randrange(1, 50)
            history = [rng.randrange(1, 4096) for _ in range(length)]
            request["user"]["ext"] = {"attention": {"history": history}}
        return request, invalid

    def notices(self) -> list[str]:
        """The notices one bid gets, in order: a loss, or a win and then perhaps its
        billing notice and after that perhaps its attention beacon."""
        rng = self.rng
        if rng.random() >= WIN_RATE:
            return ["loss"]
        if rng.random() >= RENDER_RATE:
            return ["win"]
        return ["win", "bill", "attention"] if rng.random() < BEACON_RATE else ["win", "bill"]

    def measured_seconds(self, predicted: float) -> float:
        """An attention beacon's measurement: near the prediction, never negative."""
        return max(0.0, self.rng.gauss(predicted, predicted * 0.3))
