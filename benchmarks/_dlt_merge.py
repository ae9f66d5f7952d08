"""dlt's merge load of the benchmark CSV (run with a side environment's Python that has dlt; not a project
dependency): pyarrow record batches, CSV loader file format, merge on `id`.

    /tmp/dltvenv/bin/python benchmarks/_dlt_merge.py FILE POSTGRES_URL
"""

import os
import sys
import tempfile

import dlt
import pyarrow.csv as pacsv


def main(path: str, url: str) -> None:
    user, _, rest = url.partition("://")[2].partition("@")
    if ":" not in user:  # dlt insists on a password; a trust-auth server ignores it
        url = url.replace(f"://{user}@", f"://{user}:unused@", 1)
    os.environ["DESTINATION__POSTGRES__CREDENTIALS"] = url
    os.environ["DATA_WRITER__DISABLE_COMPRESSION"] = "true"

    @dlt.resource(name="bench_dlt", write_disposition="merge", primary_key="id")
    def rows():
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=16 << 20))
        yield from reader

    pipe = dlt.pipeline(
        pipeline_name="etl_bench_dlt",
        destination="postgres",
        dataset_name="bench",
        pipelines_dir=tempfile.mkdtemp(prefix="dlt-"),
    )
    pipe.run(rows(), loader_file_format="csv")
    print(dlt.__version__)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
