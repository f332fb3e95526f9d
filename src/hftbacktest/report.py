"""Self-contained HTML report of a recorded backtest; `hftbacktest report RECORD.npz -o report.html`."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("report", help="write a self-contained HTML report from a recorder .npz")
    p.add_argument("record", help="record file written by Recorder.to_npz")
    p.add_argument("-o", "--output", default="report.html", help="HTML file to write (default: report.html)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    print("hftbacktest report: not available yet")
    return 1
