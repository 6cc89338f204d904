#!/usr/bin/env python3
"""Compares a load's seconds with a background job running against those with it paused.

    scripts/bench/alternation.py TIMELINE STARTED_AT EVENTS

TIMELINE is `examples/load --timeline` output (second, acknowledged, p99_ms, max_ms), second 0
starting at STARTED_AT (Unix time, the load's summary). EVENTS has one `<unix time> <state>`
line per change of the job, state `run` (started or resumed), `pause` or `end`. A second
belongs to a state when the job was in it for the whole second; seconds with a change in them,
and those before the first `run` or after `end`, are left out.

Prints one line: the median of the per-second p99s while running and while paused, how many
seconds each, and the windows compared pairwise: each running window's median against the
paused window right before it, how many were higher and how many lower. Alternating within one load cancels the
drift from load to load that comparing separate loads suffers.
"""

import statistics
import sys


def read_events(path):
    events = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                events.append((float(parts[0]), parts[1]))
    return sorted(events)


def read_timeline(path):
    seconds = []
    with open(path) as f:
        next(f, None)
        for line in f:
            second, _acked, p99, _max = line.rstrip("\n").split("\t")
            seconds.append((int(second), float(p99)))
    return seconds


def windows(seconds, started_at, events):
    """Yields (state, [p99, ...]) for each run of whole seconds in one state, in order."""
    current, values = None, []
    for second, p99 in seconds:
        start, end = started_at + second, started_at + second + 1
        before = [state for t, state in events if t <= start]
        inside = [t for t, _ in events if start < t < end]
        state = before[-1] if before else None
        if inside or state not in ("run", "pause"):
            state = None
        if state != current and values:
            yield current, values
            values = []
        current = state
        if state is not None:
            values.append(p99)
    if values:
        yield current, values


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    seconds = read_timeline(sys.argv[1])
    events = read_events(sys.argv[3])
    spans = list(windows(seconds, float(sys.argv[2]), events))
    running = [v for s, vs in spans if s == "run" for v in vs]
    paused = [v for s, vs in spans if s == "pause" for v in vs]
    if not running or not paused:
        print("no whole second both running and paused")
        return
    pairs = [
        (statistics.median(vs), statistics.median(prev))
        for (ps, prev), (s, vs) in zip(spans, spans[1:])
        if ps == "pause" and s == "run"
    ]
    higher = sum(1 for r, p in pairs if r > p)
    lower = sum(1 for r, p in pairs if r < p)
    print(
        f"per-second p99 median {statistics.median(running):.1f} ms running "
        f"({len(running)} s) vs {statistics.median(paused):.1f} ms paused ({len(paused)} s); "
        f"of {len(pairs)} running windows, {higher} above the paused one before them "
        f"and {lower} below"
    )


if __name__ == "__main__":
    main()
