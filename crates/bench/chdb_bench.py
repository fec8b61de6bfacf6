"""Runs polymeter-bench's ClickHouse side: the same data and queries on
ClickHouse's engine, in-process through chdb. Reads a JSON spec written by
polymeter-bench (setup statements and the query set, SQL included), prints a
JSON report on stdout and progress on stderr. Only the engine's own work is
timed: each `session.query` call."""

import json
import sys
import time

from chdb import session


def run(sess, sql, fmt="JSONCompact"):
    result = sess.query(sql, fmt)
    if result.has_error():
        raise SystemExit(f"ClickHouse error: {result.error_message()}\n{sql}")
    return result


def main():
    spec = json.load(open(sys.argv[1]))
    sess = session.Session(spec["session_dir"])
    started = time.perf_counter()
    for statement in spec["setup"]:
        print(f"clickhouse: {statement.splitlines()[0][:100]}", file=sys.stderr, flush=True)
        run(sess, statement, "CSV")
    load_seconds = time.perf_counter() - started
    report = {"load_seconds": load_seconds, "version": run(sess, "SELECT version()", "CSV").data().strip(), "queries": []}
    for query in spec["queries"]:
        times = []
        results = None
        for i in range(spec["warmup"] + spec["iterations"]):
            total = 0.0
            parts = []
            for sql in query["sql"]:
                t = time.perf_counter()
                result = run(sess, sql)
                total += time.perf_counter() - t
                parts.append(result)
            if i >= spec["warmup"]:
                times.append(total * 1000.0)
            results = parts
        report["queries"].append(
            {"name": query["name"], "times_ms": times, "results": [json.loads(r.data())["data"] for r in results]}
        )
        print(f"clickhouse: {query['name']} done", file=sys.stderr, flush=True)
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
