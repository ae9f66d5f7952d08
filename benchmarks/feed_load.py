"""RSS/Atom feed throughput: entries/s for a large generated RSS 2.0 feed read from a file, through the core
ingest loop (feedparser, coercion, upsert by id).

    python benchmarks/feed_load.py [--entries 20000] [--pg]
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, tempdir, timed_ingest, write_result  # noqa: E402


def generate(path: Path, n: int) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    with path.open("w", encoding="utf-8") as f:
        f.write(
            '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel><title>bench</title>'
            "<link>https://example.com/</link><description>generated</description>\n"
        )
        for i in range(n):
            when = format_datetime(start + timedelta(minutes=i))
            f.write(
                f"<item><guid>https://example.com/p/{i}</guid><title>{escape(f'Post {i} & more')}</title>"
                f"<link>https://example.com/p/{i}</link><description>{escape(f'<p>Body of post {i}</p>')}"
                f"</description><pubDate>{when}</pubDate><author>a{i % 50}@example.com</author>"
                f"<category>c{i % 7}</category></item>\n"
            )
        f.write("</channel></rss>\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=20_000)
    ap.add_argument("--pg", action="store_true")
    args = ap.parse_args()
    import yaml

    from etl_assets.config_load import load_sources

    root = tempdir("etl-bench-feed-")
    feed = root / "feed.xml"
    generate(feed, args.entries)
    (root / "sources.yaml").write_text(yaml.safe_dump({"news": {"kind": "rss", "url": str(feed)}}))
    spec = load_sources(str(root / "sources.yaml"))["news"]
    stats, wall = timed_ingest(spec, root, "bench-feed", args.pg)
    size_mb = feed.stat().st_size / 2**20
    result = {
        "entries": args.entries,
        "size_mb": size_mb,
        "processed": stats.processed,
        "inserted": stats.inserted,
        "wall_seconds": wall,
        "entries_per_second": stats.processed / wall,
        "warehouse": "postgresql" if args.pg else "sqlite",
    }
    print_table(
        f"RSS feed, {args.entries:,} entries, {size_mb:.1f} MB",
        [("entries landed", stats.inserted), ("wall seconds", wall), ("entries/s", stats.processed / wall)],
        ("what", "value"),
    )
    write_result("feed_load", result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
