"""The vocabulary of column names, as data: abbreviations, related words, filler tokens and everyday words.

Kept apart from the matching code so that a word can be added without reading an algorithm.
"""

# Abbreviations and inflections -> one canonical word (applied per token, before stemming).
ABBREVIATIONS: dict[str, str] = {
    "amt": "amount", "qty": "quantity", "quant": "quantity",
    "lat": "latitude", "lon": "longitude", "lng": "longitude", "long": "longitude",
    "dt": "datetime", "ts": "timestamp", "tstamp": "timestamp",
    "no": "number", "num": "number", "nbr": "number", "nr": "number", "nmbr": "number",
    "identifier": "id",
    "desc": "description", "descr": "description", "addr": "address", "cust": "customer",
    "fwd": "forward", "pct": "percent", "perc": "percent", "cnt": "count", "dist": "distance",
    "dur": "duration", "yr": "year", "tm": "time", "cd": "code", "tel": "phone",
    "telephone": "phone", "msg": "message", "dept": "department", "acct": "account",
    "txn": "transaction", "trx": "transaction", "ref": "reference", "avg": "average",
    "prev": "previous", "cat": "category", "loc": "location", "lvl": "level", "src": "source",
    "dst": "destination", "dest": "destination", "usr": "user", "idx": "index", "seq": "sequence",
    "tot": "total", "info": "information", "ver": "version",
    "start": "start", "started": "start", "starting": "start", "begin": "start", "began": "start",
    "beginning": "start",
    "end": "end", "ended": "end", "ending": "end", "stop": "end", "stopped": "end",
    "finish": "end", "finished": "end",
}

# Related (not identical) words: partial token credit. Deliberately below 1 so that a rename resting
# on a synonym needs the rest of the name to agree before it reaches the auto-map threshold.
RELATED_WORDS: list[tuple[str, str, float]] = [
    ("date", "datetime", 0.85), ("time", "datetime", 0.85), ("timestamp", "datetime", 0.95),
    ("date", "timestamp", 0.85), ("time", "timestamp", 0.85), ("date", "time", 0.75),
    ("number", "id", 0.75), ("key", "id", 0.7), ("code", "id", 0.6),
    ("pickup", "start", 0.85), ("dropoff", "end", 0.85),
    ("from", "start", 0.8), ("origin", "start", 0.8), ("to", "end", 0.8),
    ("destination", "end", 0.8), ("gender", "sex", 0.9),
]

# Tokens that carry almost no identity: vendor/system prefixes (NYC TLC "tpep_", "lpep_"), filler
# words and ordinal group prefixes ("01 - Rental Details ..."). Dropping one costs a little.
DROPPABLE = {"tpep", "lpep", "fhv", "fhvhv", "the", "of", "and", "a", "an", "in", "for", "by", "per"}

# Everyday column-name words, used only to split run-together names ("tripduration",
# "bikeid", "usertype") into tokens. Header tokens of the call are added per call.
COMMON_WORDS = {
    "trip", "ride", "bike", "user", "type", "time", "date", "day", "year", "month", "week",
    "hour", "birth", "name", "code", "rate", "count", "total", "station", "start", "stop", "end",
    "id", "key", "duration", "distance", "amount", "price", "fee", "tax", "flag", "status",
    "city", "state", "zip", "country", "region", "first", "last", "full", "update", "store",
    "forward", "pickup", "dropoff", "payment", "vendor", "passenger", "fare", "tip", "toll",
    "member", "customer", "account", "order", "item", "product", "number", "value", "group",
    "level", "line", "address", "phone", "email", "postal", "event", "source", "rental",
    "latitude", "longitude", "datetime", "timestamp", "seconds", "min", "max", "sum", "mean",
    "height", "width", "weight", "size", "age", "gender", "sex", "score", "unit", "class",
}
SHORT_PIECES = {"id", "at", "no", "dt", "ts"}  # the only 2-letter pieces a split may produce
