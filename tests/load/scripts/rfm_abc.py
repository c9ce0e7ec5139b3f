#!/usr/bin/env python3
"""RFM quintiles and ABC bands over a CSV of purchases, the way analysts compute them
today: once with DuckDB SQL, once with pandas. The same rules as the engine
(services/classification: population.rs): recency by the last purchase, frequency by the
number of purchases, monetary by their total; quintile score 5 - floor(5i/n) at rank i
(best first, ties by customer id); ABC over revenue in the 365 days before as_of: HIGH
while the revenue ranked before a customer is under 80 % of the total, MEDIUM under 95 %.

    clientela-load classification --csv /tmp/purchases.csv ...
    python3 -m venv /tmp/anvenv && /tmp/anvenv/bin/pip install duckdb pandas
    /tmp/anvenv/bin/python tests/load/scripts/rfm_abc.py /tmp/purchases.csv

Prints the seconds each tool took (load, then compute) and the counts per band, so the
results can be compared with the engine's GetSegmentDistribution.
"""

import sys
import time

AS_OF = "2026-11-01T00:00:00+00:00"


def duckdb_run(path):
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    start = time.perf_counter()
    con.execute(
        "CREATE TABLE p AS SELECT customer_id, occurred_at::TIMESTAMPTZ AS t, "
        "amount_minor AS a FROM read_csv(?, header = true)",
        [path],
    )
    loaded = time.perf_counter()
    rows = con.execute(
        f"""
        WITH c AS (
          SELECT customer_id, max(t) AS last, count(*) AS f, sum(a) AS m,
                 sum(CASE WHEN t > TIMESTAMPTZ '{AS_OF}' - INTERVAL 365 DAY THEN a ELSE 0 END) AS w
          FROM p WHERE t <= TIMESTAMPTZ '{AS_OF}' GROUP BY customer_id),
        r AS (
          SELECT *,
            5 - floor(5 * (row_number() OVER (ORDER BY last DESC, customer_id) - 1) / count(*) OVER ()) AS rs,
            5 - floor(5 * (row_number() OVER (ORDER BY f DESC, customer_id) - 1) / count(*) OVER ()) AS fs,
            5 - floor(5 * (row_number() OVER (ORDER BY m DESC, customer_id) - 1) / count(*) OVER ()) AS ms,
            coalesce(sum(w) OVER (ORDER BY w DESC, customer_id
                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before,
            sum(w) OVER () AS total
          FROM c)
        SELECT
          CASE WHEN w <= 0 THEN 'LOW'
               WHEN before * 10000 < total * 8000 THEN 'HIGH'
               WHEN before * 10000 < total * 9500 THEN 'MEDIUM'
               ELSE 'LOW' END AS abc,
          rs, fs, ms
        FROM r
        """
    ).fetchall()
    done = time.perf_counter()
    abc = {}
    recency = {}
    for band, rs, _fs, _ms in rows:
        abc[band] = abc.get(band, 0) + 1
        recency[int(rs)] = recency.get(int(rs), 0) + 1
    return loaded - start, done - loaded, abc, recency


def pandas_run(path):
    import pandas as pd

    start = time.perf_counter()
    p = pd.read_csv(path)
    p["t"] = pd.to_datetime(p["occurred_at"], utc=True, format="ISO8601")
    loaded = time.perf_counter()
    as_of = pd.Timestamp(AS_OF)
    p = p[p["t"] <= as_of]
    p["w"] = p["amount_minor"].where(p["t"] > as_of - pd.Timedelta(days=365), 0)
    c = p.groupby("customer_id").agg(
        last=("t", "max"), f=("t", "size"), m=("amount_minor", "sum"), w=("w", "sum")
    ).reset_index()
    n = len(c)

    def score(frame, column):
        order = frame.sort_values([column, "customer_id"], ascending=[False, True])
        i = pd.Series(range(n), index=order.index)
        return 5 - (5 * i) // n

    c["rs"] = score(c, "last")
    c["fs"] = score(c, "f")
    c["ms"] = score(c, "m")
    ranked = c.sort_values(["w", "customer_id"], ascending=[False, True])
    before = ranked["w"].cumsum() - ranked["w"]
    total = ranked["w"].sum()
    band = pd.Series("LOW", index=ranked.index)
    band[(ranked["w"] > 0) & (before * 10000 < total * 9500)] = "MEDIUM"
    band[(ranked["w"] > 0) & (before * 10000 < total * 8000)] = "HIGH"
    done = time.perf_counter()
    return (
        loaded - start,
        done - loaded,
        band.value_counts().to_dict(),
        c["rs"].value_counts().to_dict(),
    )


def main():
    path = sys.argv[1]
    for name, run in (("duckdb", duckdb_run), ("pandas", pandas_run)):
        load, compute, abc, recency = run(path)
        print(
            f"{name}: load {load:.2f} s, RFM + ABC {compute:.2f} s; "
            f"ABC {dict(sorted(abc.items()))}; recency scores {dict(sorted(recency.items()))}"
        )


if __name__ == "__main__":
    main()
