"""Requests, errors and latency in the Prometheus text format (``GET /metrics``).

A handful of counters and one histogram, kept by hand: the format is a few lines of text, and
the server needs nothing more than what an HTTP client library already gives a scraper.
"""
from __future__ import annotations

import threading
from collections import Counter

#: latency histogram buckets, seconds (a person-model request on a laptop: ~10-50 ms)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str, int]] = Counter()  # (method, route, status)
        self.errors: Counter[str] = Counter()  # error kind -> count (4xx/5xx answers)
        self._hist: dict[str, list[int]] = {}  # route -> bucket counts (+Inf last)
        self._sum: Counter[str] = Counter()
        self.in_flight = 0

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, route, status)] += 1
            if status >= 400:
                self.errors[str(status)] += 1
            counts = self._hist.setdefault(route, [0] * (len(BUCKETS) + 1))
            for i, b in enumerate(BUCKETS):
                if seconds <= b:
                    counts[i] += 1
                    break
            else:
                counts[-1] += 1
            self._sum[route] += seconds

    def text(self, gauges: dict[str, tuple[str, list[tuple[str, float]]]]) -> str:
        """The exposition text; ``gauges``: name -> (help, [(labels, value)]) read at scrape time
        (labels: '' or 'model="x"')."""
        out = ["# HELP segkit_requests_total HTTP requests answered, by method, route and status.",
               "# TYPE segkit_requests_total counter"]
        with self._lock:
            for (method, route, status), n in sorted(self.requests.items()):
                out.append(f'segkit_requests_total{{method="{method}",route="{route}",status="{status}"}} {n}')
            out += ["# HELP segkit_request_errors_total Requests answered with a 4xx or 5xx status.",
                    "# TYPE segkit_request_errors_total counter"]
            for status, n in sorted(self.errors.items()):
                out.append(f'segkit_request_errors_total{{status="{status}"}} {n}')
            out += ["# HELP segkit_request_seconds Time from request to the end of the response.",
                    "# TYPE segkit_request_seconds histogram"]
            for route, counts in sorted(self._hist.items()):
                total = 0
                for b, c in zip((*BUCKETS, "+Inf"), counts):
                    total += c
                    out.append(f'segkit_request_seconds_bucket{{route="{route}",le="{b}"}} {total}')
                out.append(f'segkit_request_seconds_sum{{route="{route}"}} {self._sum[route]:.6f}')
                out.append(f'segkit_request_seconds_count{{route="{route}"}} {total}')
        for name, (help_text, samples) in gauges.items():
            out += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
            out += [f"{name}{{{labels}}} {value:g}" if labels else f"{name} {value:g}" for labels, value in samples]
        return "\n".join(out) + "\n"
