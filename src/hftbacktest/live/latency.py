"""`python -m hftbacktest.live.latency LOG.jsonl [...] -o latency.npz`: order-latency log -> IntpOrderLatency file."""
from __future__ import annotations

import argparse
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hftbacktest.live.latency", description=__doc__)
    parser.add_argument("logs", nargs="+", help="JSONL files written by OrderLatencyLogger")
    parser.add_argument("-o", "--output", required=True, help="output .npz for BacktestAsset().intp_order_latency")
    args = parser.parse_args(argv)
    from ..errors import HftBacktestError
    from .recorder import latency_log_to_npz

    try:
        arr = latency_log_to_npz(args.logs, args.output)
    except (HftBacktestError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    answered = arr[arr["exch_ts"] > 0]
    entry = (answered["exch_ts"] - answered["req_ts"]) / 1e6 if len(answered) else np.array([np.nan])
    resp = (arr["resp_ts"] - arr["req_ts"]) / 1e6
    print(f"{len(arr)} rows -> {args.output}; entry latency median {np.median(entry):.3f} ms, "
          f"round trip median {np.median(resp):.3f} ms, {len(arr) - len(answered)} rejections")
    return 0


if __name__ == "__main__":
    sys.exit(main())
