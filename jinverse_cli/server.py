"""A resident ``jinverse`` process: JAX imported, every program traced and compiled once.

``jinverse server start`` runs one in the background (one per user, cache folder, Python and
``JAX_*``/``XLA_*`` environment). While it is up, each ``solve``, ``sample``, ``bench`` or ``demo``
command is sent to it over a Unix socket (mode 0600, in a 0700 folder of the temporary directory)
and runs there with this terminal's working directory, environment, output and exit status, so a
repeated command costs its work alone: no interpreter start, no imports, no tracing, no
compilation. Ctrl-C interrupts the command in the server as it would here. The server runs one
command at a time (others wait their turn) and stops after ``--idle-timeout`` minutes without a
command, on ``jinverse server stop``, or at the first command after jinverse's source has changed
(that command runs here). ``--no-server`` or ``JINVERSE_NO_SERVER=1`` runs a command here.

The client side imports the standard library only: forwarding costs the interpreter's start-up
and a few milliseconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pathlib
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings

from .names import SERVED_COMMANDS

PROTOCOL = 1
_GROUP_VALUE_OPTIONS = ("--config", "--precision")
_PACKAGES = ("jinverse", "jinverse_cli")


# -- where the server listens, and what it must match -------------------------------------------------

def runtime_dir() -> pathlib.Path:
    folder = pathlib.Path(tempfile.gettempdir()) / f"jinverse-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    if folder.stat().st_uid != os.getuid() or folder.stat().st_mode & 0o077:
        raise RuntimeError(f"jinverse server: {folder} must be a folder of this user with mode 0700")
    return folder


def identity() -> str:
    """What a server must share with a client to run its commands: the interpreter, the cache
    folder and the environment JAX reads when it starts."""
    cache = os.environ.get("JINVERSE_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "jinverse"))
    env = sorted((k, v) for k, v in os.environ.items() if k.startswith(("JAX_", "XLA_")))
    return hashlib.sha256(repr((PROTOCOL, sys.executable, os.path.abspath(cache), env)).encode()).hexdigest()[:16]


def socket_path() -> pathlib.Path:
    return runtime_dir() / f"{identity()}.sock"


def source_stamp() -> str:
    """The name, size and modification time of every source file of jinverse and its CLI."""
    h = hashlib.sha256()
    for package in _PACKAGES:
        spec = __import__("importlib.util").util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        for root in spec.submodule_search_locations:
            for path in sorted(pathlib.Path(root).rglob("*.py")):
                st = path.stat()
                h.update(f"{path}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


# -- frames: a 4-byte length, then JSON ---------------------------------------------------------------

def _send(conn: socket.socket, message: dict) -> None:
    data = json.dumps(message).encode()
    conn.sendall(struct.pack(">I", len(data)) + data)


def _recv(conn: socket.socket) -> dict | None:
    head = _read_exactly(conn, 4)
    if head is None:
        return None
    body = _read_exactly(conn, struct.unpack(">I", head)[0])
    return None if body is None else json.loads(body)


def _read_exactly(conn: socket.socket, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = conn.recv(min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _connect(timeout: float | None = None) -> socket.socket | None:
    path = socket_path()
    if not path.exists():
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        conn.connect(str(path))
    except OSError:
        conn.close()
        return None
    return conn


# -- the client ----------------------------------------------------------------------------------------

def command_of(argv: list[str]) -> tuple[str | None, list[str]]:
    """The command named in ``argv`` and the group options before it."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _GROUP_VALUE_OPTIONS:
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            return arg, argv[:i]
    return None, argv


def forward(argv: list[str]) -> int | None:
    """Run ``argv`` in the server and return its exit status; None when it is not for a server
    (no server, ``--no-server``, help, another command) or the server turned it down."""
    command, group = command_of(argv)
    if (not hasattr(socket, "AF_UNIX") or not hasattr(os, "getuid") or command not in SERVED_COMMANDS or "--no-server" in group or os.environ.get("JINVERSE_NO_SERVER")
            or any(a in ("-h", "--help", "--version") for a in argv)):
        return None
    try:
        conn = _connect()
    except RuntimeError:
        return None
    if conn is None:
        return None
    with conn:
        tty = [bool(getattr(s, "isatty", lambda: False)()) for s in (sys.stdout, sys.stderr)]
        _send(conn, {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "tty": tty,
                     "source": source_stamp()})
        return _relay(conn)


def _relay(conn: socket.socket) -> int | None:
    """Copy the server's output here until the command's exit status comes. The first Ctrl-C is
    passed on to the server (the command stops as it would here, checkpoints kept); a second
    one leaves at once (exit 130) while the server finishes on its own."""
    state = {"pid": None, "interrupts": 0}

    def on_sigint(signum, frame):
        state["interrupts"] += 1
        if state["pid"] is None or state["interrupts"] > 1:
            raise KeyboardInterrupt
        os.kill(state["pid"], signal.SIGINT)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        while True:
            msg = _recv(conn)
            if msg is None:
                print("Error: the jinverse server closed the connection before the command finished "
                      "(its log: jinverse server status)", file=sys.stderr)
                return 1
            kind = msg["kind"]
            if kind == "hello":
                state["pid"] = msg["pid"]
            elif kind in ("out", "err"):
                stream = sys.stdout if kind == "out" else sys.stderr
                stream.write(msg["text"])
                stream.flush()
            elif kind == "exit":
                return int(msg["code"])
            else:  # "stale": the server runs an older source and is stopping; run the command here
                return None
    except KeyboardInterrupt:
        print("Aborted! (the server finishes the command on its own)", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`| head`): the command stops at its next output
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1
    finally:
        signal.signal(signal.SIGINT, previous)


def request(what: str, timeout: float = 10.0) -> dict | None:
    """``{"status": ...}`` or ``{"stop": ...}`` of the running server; None if none is running."""
    conn = _connect(timeout)
    if conn is None:
        return None
    with conn:
        _send(conn, {what: True})
        return _recv(conn)


def start(idle_minutes: float, wait: float = 120.0) -> dict:
    """Start a server in the background (a new session, output to its log) and wait until it
    answers; its status."""
    if not hasattr(socket, "AF_UNIX") or not hasattr(os, "getuid"):
        raise RuntimeError("jinverse server needs Unix sockets (Linux, macOS)")
    running = request("status")
    if running is not None:
        return {**running, "already": True}
    log = runtime_dir() / f"{identity()}.log"
    code = f"from jinverse_cli.server import serve; serve({float(idle_minutes)!r})"
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    t0 = time.monotonic()
    while time.monotonic() - t0 < wait:
        status = request("status")
        if status is not None:
            return status
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}; its log: {log}")
        time.sleep(0.1)
    raise RuntimeError(f"the server did not answer within {wait:.0f} s; its log: {log}")


# -- the server ----------------------------------------------------------------------------------------

class _Stream(io.TextIOBase):
    """sys.stdout/sys.stderr of a forwarded command: text goes to the client as it is written."""

    encoding = "utf-8"
    errors = "strict"

    def __init__(self, conn: socket.socket, kind: str, tty: bool):
        self._conn, self._kind, self._tty = conn, kind, tty

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._tty

    def write(self, text: str) -> int:
        if isinstance(text, (bytes, bytearray)):  # click writes bytes when it strips colours
            text = bytes(text).decode("utf-8", "replace")
        if text:
            _send(self._conn, {"kind": self._kind, "text": text})
        return len(text)


class _State:
    busy = False


def _on_sigint(signum, frame):
    if _State.busy:  # a client's Ctrl-C, for the command running now
        raise KeyboardInterrupt
    # idle: nothing to interrupt


def serve(idle_minutes: float = 30.0) -> None:
    """Listen on `socket_path` and run commands until idle for ``idle_minutes`` or stopped."""
    # imported once, here: what the commands import (JAX, blackjax, optax, the problems)
    import fcntl

    import jinverse.bench
    import jinverse.cli._outputs
    import jinverse.problems
    import jinverse.sampling  # noqa: F401
    from jinverse_cli.parser import main

    stamp, path = source_stamp(), socket_path()
    lock = open(path.with_suffix(".lock"), "w")  # held while this server lives: one per socket
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print("jinverse server: another server with this socket is running", flush=True)
        return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a server that died without cleaning up (its socket refuses connections)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old_umask)
    listener.listen(8)
    listener.settimeout(idle_minutes * 60)
    signal.signal(signal.SIGINT, _on_sigint)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    info = {"pid": os.getpid(), "socket": str(path), "started": time.time(), "idle_minutes": idle_minutes,
            "served": 0, "log": str(path.with_suffix(".log"))}
    print(f"jinverse server {info}", flush=True)
    try:  # (the lock file stays open, and locked, until the process ends)
        while True:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                break
            with conn:
                conn.settimeout(None)
                if not _handle(conn, main, stamp, info):
                    break
    finally:  # a clean stop leaves nothing behind (a crash leaves the log)
        listener.close()
        for leftover in (path, path.with_suffix(".log"), path.with_suffix(".lock")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _handle(conn, main, stamp, info) -> bool:
    """Serve one connection; False when the server should stop."""
    try:
        req = _recv(conn)
    except OSError:
        return True
    if req is None:
        return True
    if req.get("status"):
        _send(conn, {"kind": "status", **info})
        return True
    if req.get("stop"):
        _send(conn, {"kind": "stopped", **info})
        return False
    if req.get("source") != stamp:
        _send(conn, {"kind": "stale"})
        return False
    _send(conn, {"kind": "hello", "pid": os.getpid()})
    code = _run(conn, main, req)
    info["served"] += 1
    _trim()
    with contextlib.suppress(OSError):
        _send(conn, {"kind": "exit", "code": code})
    return True


MAX_MAPPINGS = 30_000  # Linux allows 65,530 per process (vm.max_map_count); XLA segfaults past it


def _trim() -> None:
    """Drop JAX's compiled programs once the process holds many memory mappings (every loaded
    XLA:CPU executable keeps some): a long-lived server must not reach the limit."""
    try:
        with open("/proc/self/maps") as maps:
            count = sum(1 for _ in maps)
    except OSError:
        return
    if count > MAX_MAPPINGS:
        import gc

        import jax

        from jinverse import programs

        jax.clear_caches()
        programs.forget()
        gc.collect()


def _run(conn, main, req) -> int:
    """``jinverse ARGV`` as the client would run it: its cwd, environment and streams."""
    saved = sys.stdout, sys.stderr, os.getcwd(), dict(os.environ)
    sys.stdout, sys.stderr = (_Stream(conn, k, t) for k, t in zip(("out", "err"), req["tty"]))
    try:
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"], JINVERSE_SERVED="1")
        with warnings.catch_warnings():  # each command starts from the default filters and shows its warnings
            _State.busy = True
            try:
                main.main(args=req["argv"], prog_name="jinverse", standalone_mode=True)
                return 0
            except SystemExit as exc:
                return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except KeyboardInterrupt:
                return 130
            except BaseException:  # a bug in the command: report it and keep serving
                traceback.print_exc()
                return 1
            finally:
                _State.busy = False
    except OSError:  # the client went away
        return 1
    finally:
        sys.stdout, sys.stderr = saved[0], saved[1]
        os.chdir(saved[2])
        os.environ.clear()
        os.environ.update(saved[3])
