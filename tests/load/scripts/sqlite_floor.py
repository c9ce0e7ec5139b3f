#!/usr/bin/env python3
"""The floor of registry-import on SQLite: the same rows the batch path writes
(a purchase and its outbox event per row, 1,000 rows a transaction, multi-row INSERTs,
the registry's schema and pragmas), fed to the sqlite3 shell with no server around it.

    target/release/clientela migrate            # with CLIENTELA__DATA_DIR=/tmp/floor
    python3 tests/load/scripts/sqlite_floor.py > /tmp/floor.sql
    time taskset -c 0 sqlite3 /tmp/floor/registry.db < /tmp/floor.sql > /dev/null

The customers are not created, so foreign keys are left off (the shell's default):
one index lookup a row less than the server does.
"""

import json
import random
import sys
import uuid

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
BATCH = 1_000
LINES = json.dumps([{"line_number": 1, "sku": "SKU-1", "product_line": "", "quantity": 2,
                     "unit_price_minor": 12990, "discounted": False, "returned_quantity": 0}])

def time_ordered(n):
    """A UUIDv7-like id that grows with n, as the registry's ids grow with time."""
    return f"{n >> 16:08x}-{n & 0xffff:04x}-7000-8000-{random.getrandbits(48):012x}"


random.seed(7)
customers = [str(uuid.uuid4()) for _ in range(100_000)]
out = sys.stdout
out.write("PRAGMA journal_mode=WAL;\nPRAGMA synchronous=NORMAL;\n"
          "PRAGMA cache_size=-16384;\nPRAGMA temp_store=memory;\n")
sequence = 0
for b in range(ROWS // BATCH):
    purchases, events = [], []
    for i in range(BATCH):
        n = b * BATCH + i
        pid, customer, order = time_ordered(2 * n), random.choice(customers), f"ORD-{b}-{i}"
        purchases.append(f"('{pid}','{customer}','{order}','2026-11-20T10:00:00Z','ONLINE',"
                         f"'CLP',25980,0,'{LINES}','2026-11-22T10:00:00Z')")
        sequence += 1
        payload = json.dumps({"PurchaseRecorded": {"id": pid, "customer_id": customer,
                                                   "order_id": order, "lines": json.loads(LINES),
                                                   "total_minor": 25980}})
        events.append(f"({sequence},'{time_ordered(2 * n + 1)}','{customer}','PurchaseRecorded',"
                      f"'2026-11-22T10:00:00Z','{payload}')")
    out.write("BEGIN;\n")
    for k in range(0, BATCH, 500):
        out.write("INSERT INTO purchases VALUES " + ",".join(purchases[k:k + 500]) + ";\n")
    out.write(f"UPDATE feed_counter SET last_sequence = last_sequence + {BATCH} WHERE id = 1;\n")
    out.write("INSERT INTO events VALUES " + ",".join(events) + ";\nCOMMIT;\n")
