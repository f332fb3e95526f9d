"""Prepare the data every benchmark runs on, into benchmarks/_work/ (git-ignored).

    .venv/bin/python benchmarks/prepare_data.py [--converter ref|ours] [--force]

* `{sym}_20240808_{converter}.npz`: both raw samples in ../shared/data/binance-usdm converted with the reference
  converter (run in .venv-ref) or ours (`--converter ours`, run in .venv);
* `{sym}_20240808_{converter}_first{N}.npz`: the first N rows (for `--quick` runs and the golden tests);
* `btcusdt_20240808_{converter}_rest{N}.npz` + `..._snapshot{N}.npz`: the rows after N, and the reference
  `create_last_snapshot` of the first N rows (to exercise `initial_snapshot`);
* `order_latency_20240808.npz`: a seeded synthetic `intp_order_latency` file spanning both days' time range,
  with a few exchange-rejection rows (exch_ts = 0) so the negative-latency path is exercised;
* `btcusdt_20240808_replay.{npz,npy}`: the btcusdt day repeated in time to ~10 M events for replay.py.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import _ref

QUICK_ROWS = 150_000  # ~2 minutes of the btcusdt sample; also the golden tests' truncation
REPLAY_EVENTS = 10_000_000
LATENCY_SEED = 20240808
LATENCY_ROW_NS = 50_000_000  # one recorded round trip every ~50 ms
REJECT_EVERY = 500  # ~0.2 % of rows are exchange rejections

CONVERT_SNIPPET = """
import json, sys
from hftbacktest.data.utils.binancefutures import convert
convert(sys.argv[1], output_filename=sys.argv[2])
print(json.dumps({"ok": True}))
"""

SNAPSHOT_SNIPPET = """
import json, sys
from hftbacktest.data.utils.snapshot import create_last_snapshot
create_last_snapshot([sys.argv[1]], float(sys.argv[2]), float(sys.argv[3]), output_snapshot_filename=sys.argv[4])
print(json.dumps({"ok": True}))
"""

# tick/lot sizes of the two USD-M contracts in the samples
TICK_LOT = {"btcusdt": (0.1, 0.001), "ethusdt": (0.01, 0.001)}


def _fresh(path, force: bool) -> bool:
    if path.exists() and not force:
        print(f"  kept     {path.relative_to(_ref.REPO)}")
        return False
    return True


def _done(path, t0: float) -> None:
    size = path.stat().st_size / 1e6
    print(f"  wrote    {path.relative_to(_ref.REPO)}  ({size:.1f} MB, {time.perf_counter() - t0:.1f} s)")


def convert_samples(converter: str, force: bool) -> None:
    python = _ref.ref_python() if converter == "ref" else _ref.our_python()
    for sym in _ref.SYMBOLS:
        out = _ref.converted(sym, converter)
        if not _fresh(out, force):
            continue
        raw = _ref.SHARED_DATA / f"{sym}_{_ref.DAY}.gz"
        if not raw.exists():
            sys.exit(f"raw sample not found: {raw}")
        t0 = time.perf_counter()
        try:
            _ref.run_snippet(python, CONVERT_SNIPPET, str(raw), str(out), env={"CI": "1"}, timeout=900)
        except _ref.ChildFailed as exc:
            sys.exit(f"conversion with the {converter} converter failed: {exc}")
        _done(out, t0)


def truncate(converter: str, rows: int, force: bool) -> None:
    for sym in _ref.SYMBOLS:
        out = _ref.converted(sym, converter, rows)
        if _fresh(out, force):
            t0 = time.perf_counter()
            data = np.load(_ref.converted(sym, converter))["data"]
            np.savez(out, data=data[:rows])
            _done(out, t0)
    sym = "btcusdt"
    rest = _ref.WORK / f"{sym}_{_ref.DAY}_{converter}_rest{rows}.npz"
    if _fresh(rest, force):
        t0 = time.perf_counter()
        data = np.load(_ref.converted(sym, converter))["data"]
        np.savez(rest, data=data[rows:])
        _done(rest, t0)
    snap = _ref.WORK / f"{sym}_{_ref.DAY}_{converter}_snapshot{rows}.npz"
    if _fresh(snap, force):
        t0 = time.perf_counter()
        tick, lot = TICK_LOT[sym]
        _ref.run_snippet(_ref.ref_python(), SNAPSHOT_SNIPPET, str(_ref.converted(sym, converter, rows)), str(tick),
                         str(lot), str(snap), env={"CI": "1"})
        _done(snap, t0)


def make_latency(converter: str, force: bool) -> None:
    out = _ref.latency_file()
    if not _fresh(out, force):
        return
    t0 = time.perf_counter()
    lo, hi = [], []
    for sym in _ref.SYMBOLS:
        data = np.load(_ref.converted(sym, converter))["data"]
        lo.append(int(data["exch_ts"].min()))
        hi.append(int(data["local_ts"].max()))
    start, end = min(lo) - 1_000_000_000, max(hi) + 1_000_000_000
    rng = np.random.default_rng(LATENCY_SEED)
    n = (end - start) // LATENCY_ROW_NS + 1
    req = start + np.arange(n, dtype=np.int64) * LATENCY_ROW_NS + rng.integers(0, LATENCY_ROW_NS // 2, n)
    # entry ~ 2 ms + lognormal tail, response ~ 1.5 ms + tail, in ns; occasional slow spells
    entry = (2_000_000 + rng.lognormal(13.0, 0.8, n)).astype(np.int64)
    resp = (1_500_000 + rng.lognormal(12.5, 0.9, n)).astype(np.int64)
    spikes = rng.random(n) < 0.01
    entry[spikes] += rng.integers(5_000_000, 50_000_000, spikes.sum())
    lat = np.zeros(n, dtype=[("req_ts", "i8"), ("exch_ts", "i8"), ("resp_ts", "i8"), ("_padding", "i8")], )
    lat["req_ts"] = req
    lat["exch_ts"] = req + entry
    lat["resp_ts"] = req + entry + resp
    # exchange rejections: never reached the matching engine, answered after the round trip
    rejected = np.arange(REJECT_EVERY // 2, n, REJECT_EVERY)
    lat["exch_ts"][rejected] = 0
    np.savez(out, data=lat)
    _done(out, t0)
    print(f"           {n} rows, {len(rejected)} rejection rows, seed {LATENCY_SEED}")


def make_replay(converter: str, events: int, force: bool) -> None:
    npz, npy = _ref.replay_file("npz"), _ref.replay_file("npy")
    if not (_fresh(npz, force) or _fresh(npy, force)):
        return
    t0 = time.perf_counter()
    day = np.load(_ref.converted("btcusdt", converter))["data"]
    copies = max(1, round(events / len(day)))
    # each copy starts 1 s after the previous copy's last local timestamp, so both clocks stay ordered
    span = int(day["local_ts"].max() - day["exch_ts"].min()) + 1_000_000_000
    out = np.empty(len(day) * copies, dtype=day.dtype)
    for k in range(copies):
        part = out[k * len(day):(k + 1) * len(day)]
        part[:] = day
        part["exch_ts"] += k * span
        part["local_ts"] += k * span
    np.save(npy, out)
    np.savez(npz, data=out)
    _done(npy, t0)
    _done(npz, t0)
    print(f"           {copies} copies x {len(day)} = {len(out)} events")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--converter", choices=("ref", "ours"), default="ref",
                    help="which converter turns the raw samples into .npz (default: the reference's)")
    ap.add_argument("--force", action="store_true", help="rebuild files that already exist")
    ap.add_argument("--quick-rows", type=int, default=QUICK_ROWS)
    ap.add_argument("--replay-events", type=int, default=REPLAY_EVENTS)
    ap.add_argument("--no-replay", action="store_true", help="skip the ~1.3 GB replay files")
    args = ap.parse_args(argv)
    _ref.WORK.mkdir(parents=True, exist_ok=True)
    print(f"preparing benchmark data in {_ref.WORK} (converter: {args.converter})")
    convert_samples(args.converter, args.force)
    truncate(args.converter, args.quick_rows, args.force)
    make_latency(args.converter, args.force)
    if not args.no_replay:
        make_replay(args.converter, args.replay_events, args.force)


if __name__ == "__main__":
    main()
