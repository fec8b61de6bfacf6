"""ClickHouse's HTTP interface, the part the `clickhouse` Rust crate uses,
served over an in-process chDB session (the ClickHouse engine as a library).

CI machines cannot run a ClickHouse server, but chDB runs the same SQL on real
MergeTree tables. This adapter lets Polymeter's ClickHouse store talk to that
engine unchanged:

* `POST /` (and `GET /`) with the SQL in the body or in `?query=`; for an
  INSERT the query is in `?query=` and the body carries the rows in the
  format it names (`RowBinaryWithNamesAndTypes` or `RowBinary`);
* `multipart/form-data` bodies: a `query` field and `param_*` fields;
* `database`, `default_format` and `param_*` in the query string; other
  settings are accepted and ignored (none of them changes an answer here);
* `X-ClickHouse-User`/`X-ClickHouse-Key` or Basic credentials, checked when
  the adapter is started with `--user`/`--password`;
* errors as HTTP 500 with `X-ClickHouse-Exception-Code` and ClickHouse's own
  `Code: N. DB::Exception: ...` text; no response compression.
* `GET /ping` answers `Ok.` like a server.

Queries run one at a time (a chDB session is not shared between threads).
With CHDB_HTTP_LOG=FILE set, each statement is appended to FILE with its
duration, for looking at what a client sends.

Usage: python chdb_http.py --port 0 --path DIR [--user U --password P]
It prints `listening on 127.0.0.1:PORT` once ready.
"""

import argparse
import base64
import email.parser
import email.policy
import os
import re
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from chdb import session

# Settings the HTTP interface itself consumes; chDB has no use for them.
HTTP_ONLY = {
    "query",
    "database",
    "default_format",
    "decompress",
    "compress",
    "enable_http_compression",
    "query_id",
    "session_id",
    "session_timeout",
    "role",
}

INSERT = re.compile(
    r"^\s*INSERT\s+INTO\s+(?P<table>.+?)\s*(?P<columns>\([^)]*\))?\s+FORMAT\s+(?P<format>\w+)\s*$",
    re.IGNORECASE | re.DOTALL,
)
FORMAT_CLAUSE = re.compile(r"\bFORMAT\s+\w+\s*;?\s*$", re.IGNORECASE)
CODE = re.compile(r"Code:\s*(\d+)")
LOG = os.environ.get("CHDB_HTTP_LOG")


class Engine:
    def __init__(self, path):
        self.session = session.Session(path)
        self.lock = threading.Lock()
        self.spool = tempfile.mkdtemp(prefix="chdb-http-")

    def run(self, sql, fmt, params, database, data=None):
        with self.lock:
            if database:
                self.session.query(f"USE `{database}`", "TSV")
            insert = INSERT.match(sql)
            if insert and data is not None:
                return self._insert(insert, data, params)
            result = self.session.query(sql, fmt, params=params or None)
            return result.bytes()

    def _insert(self, m, data, params):
        # chDB reads no request body, so the rows go through a file the engine
        # reads in the format the client named.
        path = os.path.join(self.spool, "rows.bin")
        with open(path, "wb") as f:
            f.write(data)
        columns = m.group("columns") or ""
        fmt = m.group("format")
        if fmt == "RowBinary":
            # Plain RowBinary has no header: the structure is the target's.
            names = [c.strip().strip("`") for c in columns.strip("()").split(",") if c.strip()]
            described = self.session.query(f"DESCRIBE TABLE {m.group('table')}", "TSV").bytes()
            types = dict(
                (line.split("\t")[0], line.split("\t")[1])
                for line in described.decode().splitlines()
            )
            structure = ", ".join(f"`{n}` {types[n]}" for n in names or types)
            source = f"file('{path}', 'RowBinary', '{structure}')"
        else:
            source = f"file('{path}', '{fmt}')"
        self.session.query(
            f"INSERT INTO {m.group('table')} {columns} SELECT * FROM {source}",
            "TSV",
            params=params or None,
        )
        return b""


def exception_code(message):
    found = CODE.search(message)
    return found.group(1) if found else "1001"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    engine = None
    credentials = None

    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path in ("/ping", "/"):
            if url.path == "/ping" or not url.query:
                return self._answer(200, b"Ok.\n", {})
        self._query(url, b"")

    def do_POST(self):
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            body = self.rfile.read(length) if length else b""
        self._query(url, body)

    def _read_chunked(self):
        out = bytearray()
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                self.rfile.readline()
                return bytes(out)
            out += self.rfile.read(size)
            self.rfile.readline()

    def _authorised(self):
        if self.credentials is None:
            return True
        user = self.headers.get("X-ClickHouse-User")
        key = self.headers.get("X-ClickHouse-Key", "")
        auth = self.headers.get("Authorization", "")
        if user is None and auth.startswith("Basic "):
            user, _, key = base64.b64decode(auth[6:]).decode().partition(":")
        return (user or "default", key) == self.credentials

    def _query(self, url, body):
        if not self._authorised():
            return self._error(
                "Code: 516. DB::Exception: default: Authentication failed: password is incorrect, "
                "or there is no user with such name. (AUTHENTICATION_FAILED)"
            )
        args = dict(parse_qsl(url.query, keep_blank_values=True))
        params = {k[6:]: v for k, v in args.items() if k.startswith("param_")}
        content_type = self.headers.get("Content-Type", "")
        data = None
        if content_type.startswith("multipart/form-data"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
            )
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                value = part.get_payload(decode=True).decode()
                if name == "query":
                    args["query"] = value
                elif name.startswith("param_"):
                    params[name[6:]] = value
            sql = args.get("query", "")
        elif "query" in args:
            sql = args["query"]
            if body:
                if INSERT.match(sql):
                    data = body
                else:
                    sql = sql + " " + body.decode()
        else:
            sql = body.decode()
        fmt = args.get("default_format") or "TabSeparated"
        if FORMAT_CLAUSE.search(sql) and not INSERT.match(sql):
            fmt = "TabSeparated"  # the clause in the SQL decides
        started = time.monotonic()
        try:
            out = self.engine.run(sql, fmt, params, args.get("database"), data)
        except Exception as e:  # chDB raises its own error type with ClickHouse's text
            return self._error(str(e))
        finally:
            if LOG:
                with open(LOG, "a") as f:
                    f.write(f"-- {1000 * (time.monotonic() - started):.1f} ms params={params}\n{sql};\n")
        self._answer(200, out, {"X-ClickHouse-Format": fmt})

    def _error(self, message):
        if not message.startswith("Code:"):
            message = f"Code: 1001. DB::Exception: {message}"
        self._answer(
            500,
            (message + "\n").encode(),
            {"X-ClickHouse-Exception-Code": exception_code(message)},
        )

    def _answer(self, status, body, headers):
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that gave up (a timeout, a test that stopped this process)
        # is not an error of the adapter's.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--path", required=True, help="directory of the chDB session")
    parser.add_argument("--user")
    parser.add_argument("--password", default="")
    args = parser.parse_args()
    Handler.engine = Engine(args.path)
    if args.user:
        Handler.credentials = (args.user, args.password)
    server = Server(("127.0.0.1", args.port), Handler)
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
