"""The materialization metadata keys: written by `assets.materialization_metadata`, read back by the event-log fold
(`event_fold.py`) and by the asset's row-count carry-over. One name per key, so writer and readers cannot drift."""

RECORDS_PROCESSED = "records_processed"
RECORDS_INSERTED = "records_inserted"
RECORDS_UPDATED = "records_updated"
RECORDS_UNCHANGED = "records_unchanged"
RECORDS_FAILED = "records_failed"
BATCHES = "batches"
DURATION_SECONDS = "duration_seconds"
SOURCE_LOCATION = "source_location"
CHECKPOINT = "checkpoint"
TABLE_NAME = "dagster/table_name"
ROW_COUNT = "dagster/row_count"
DRIFT_EVENTS = "drift_events"
HTTP_REQUESTS = "http_requests"
HTTP_RETRIES = "http_retries"
HTTP_STATUSES = "http_statuses"
HTTP_SECONDS = "http_seconds"
RATE_LIMIT_WAITS = "rate_limit_waits"
RATE_LIMIT_WAIT_SECONDS = "rate_limit_wait_seconds"
COLUMN_SCHEMA = "dagster/column_schema"
# A run without a partition key also records one materialization per file it loaded, for that
# file's partition (so the partitions page shows it), marked with FILE_OF_RUN (the job name): the
# metrics fold and the row-count and schema carry-overs skip those (file_events.py).
FILE_OF_RUN = "etl/file_of_run"
FILE_ROWS = "file_rows"
FILE_SHA256 = "file_sha256"
