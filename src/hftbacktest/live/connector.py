"""`python -m hftbacktest.live.connector --name bf --connector binancefutures --config bf.toml` (same as `connector`)."""
import sys

from ..connector.cli import main

if __name__ == "__main__":
    sys.exit(main())
