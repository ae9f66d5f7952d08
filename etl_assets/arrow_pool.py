"""Arrow's process-wide memory pool, set by the CLI at start and by a run where it first reads, never on import.

Arrow's default allocator (mimalloc) keeps what one batch freed for the next; jemalloc without decay hands it
back at once, so the loader's RSS stays flat over a file of any size. ARROW_DEFAULT_MEMORY_POOL, when set, is
used as is.
"""

from __future__ import annotations

import os

_done = False


def configure_arrow() -> None:
    """Use jemalloc without decay unless ARROW_DEFAULT_MEMORY_POOL says otherwise (or jemalloc is not built in).
    Once per process; the Dagster code location calls it where a run first reads (see extract/csv.py), so that
    loading the definitions never imports pyarrow."""
    global _done
    if _done:
        return
    _done = True
    import pyarrow as pa

    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ and "jemalloc" in pa.supported_memory_backends():
        pa.set_memory_pool(pa.jemalloc_memory_pool())
        pa.jemalloc_set_decay_ms(0)
