"""A ready example bid request: what `attnx example` prints and `attnx bid --example` sends."""

from __future__ import annotations

import time


def example_request(request_id: str | None = None) -> dict:
    """An OpenRTB 2.6 request for one 300x250 banner on a news site, as JSON."""
    return {
        "id": request_id or f"example-{time.time_ns()}",
        "imp": [
            {
                "id": "1",
                "banner": {"w": 300, "h": 250, "pos": 1},
                "bidfloor": 0.5,
                "bidfloorcur": "USD",
                "tagid": "homepage-top",
                "exp": 300,
            }
        ],
        "site": {
            "id": "site-1",
            "domain": "news.example",
            "cat": ["IAB12"],
            "page": "https://news.example/today",
            "publisher": {"id": "pub-1", "name": "Example News"},
        },
        "device": {
            "ua": "Mozilla/5.0",
            "ip": "203.0.113.7",
            "devicetype": 2,
            "geo": {"country": "USA"},
        },
        "user": {"id": "user-42", "ext": {"attention": {"history": [17, 4, 256, 9, 88]}}},
        "at": 2,
        "tmax": 120,
        "cur": ["USD"],
        "bcat": ["IAB25", "IAB26"],
    }
