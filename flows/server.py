"""Which Prefect API an audit records its runs on, and the Prefect servers audioqc starts.

An audit uses, in this order (:func:`resolve`):

1. **a configured API**: ``PREFECT_API_URL`` (the environment or the active Prefect profile), as
   Prefect itself would; used as it is;
2. **a background server that is up**: the one ``audioqc server start`` started (its state file
   ``$PREFECT_HOME/audioqc-server.json``), or one ``prefect server start --background`` started
   (``$PREFECT_HOME/server.pid``, at ``PREFECT_SERVER_API_HOST``:``PREFECT_SERVER_API_PORT``), if
   it answers ``/api/health``. It keeps running between audits, and stops with ``audioqc server
   stop`` (or ``prefect server stop``), or by itself after a time without audits (below);
3. otherwise, on the first use (``audioqc audit``; not with ``AUDIOQC_PREFECT_SERVER=temporary``),
   **the background server is started** (:func:`acquire_background`): detached (its own session,
   its output in ``$PREFECT_HOME/audioqc-server.log``), one for concurrent first audits (a lock
   file), stopping itself after ``AUDIOQC_SERVER_IDLE_MINUTES`` (default 15; 0: never) without an
   audit using it. Audits register their use (``$PREFECT_HOME/audioqc-server.users/<pid>``,
   touched while they run) and the server's idle watch (a thread in the server's process,
   :func:`_idle_watch`) never stops it while a registered audit's process lives;
4. otherwise **a temporary server** for this audit alone (:class:`TemporaryServer`): Prefect's API
   in a uvicorn subprocess, as Prefect's own ``SubprocessASGIServer`` runs it, which dies with the
   audit however it ends (``PR_SET_PDEATHSIG``, :mod:`flows.lifetime`) and is stopped when it ends.

Nothing here imports Prefect: the audit's start-up (:mod:`flows.startup`) launches the temporary
server first and imports Prefect (~1 s) while the server starts (~4 s).  What was read from the
environment and the profile is checked again against Prefect's own settings once Prefect is
imported (:meth:`flows.startup.Startup.api`).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from audiolib.errors import AudioQCError

#: The state file ``audioqc server start`` writes in ``PREFECT_HOME``.
STATE_FILE = "audioqc-server.json"
#: Its log, beside it.
LOG_FILE = "audioqc-server.log"
#: Held (``flock``) while the background server is looked for, started or stopped for being idle.
LOCK_FILE = "audioqc-server.lock"
#: Touched when an audit stops using the background server (its last use).
USE_FILE = "audioqc-server.used"
#: One file per audit using the background server: its pid, holding that process's start time.
USERS_DIR = "audioqc-server.users"
#: ``temporary``: an audit never starts the background server (default ``auto``: on first use).
MODE_ENV = "AUDIOQC_PREFECT_SERVER"
#: Minutes without an audit after which a server started on first use stops (0: never).
IDLE_MINUTES_ENV = "AUDIOQC_SERVER_IDLE_MINUTES"
#: The same in seconds (takes precedence; for tests).
IDLE_SECONDS_ENV = "AUDIOQC_SERVER_IDLE_SECONDS"
DEFAULT_IDLE_MINUTES = 15.0
#: A background server this young that does not answer yet is starting: audits wait for it.
STARTING_GRACE_S = 180.0
#: Prefect's own background server's pid file (``prefect server start --background``, prefect 3.8).
PREFECT_PID_FILE = "server.pid"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4200  # Prefect's own default (PREFECT_SERVER_API_PORT)
#: The factory every Prefect API server runs (prefect 3.8: ``prefect server start`` and
#: ``SubprocessASGIServer`` both run it under uvicorn).
APP_FACTORY = "prefect.server.api.server:create_app"
#: uvicorn's exit status when it cannot bind its port (``STARTUP_FAILURE``).
_UVICORN_STARTUP_FAILURE = 3


class ServerError(AudioQCError):
    """A Prefect server could not be started, stopped or reached; the message names which."""

    def __init__(self, what: str, problem: str) -> None:
        self.what, self.problem = what, problem
        super().__init__(f"{what}: {problem}")

    def __reduce__(self):
        return (type(self), (self.what, self.problem))


def prefect_home() -> Path:
    """``PREFECT_HOME`` as Prefect resolves it from the environment (default ``~/.prefect``)."""
    return Path(os.path.expanduser(os.environ.get("PREFECT_HOME") or "~/.prefect"))


def _profile_settings() -> dict[str, str]:
    """The active Prefect profile's settings (``profiles.toml``), without importing Prefect."""
    import tomllib

    path = Path(os.path.expanduser(os.environ.get("PREFECT_PROFILES_PATH") or prefect_home() / "profiles.toml"))
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, ValueError):
        return {}
    active = os.environ.get("PREFECT_PROFILE") or data.get("active") or "ephemeral"
    values = (data.get("profiles") or {}).get(active) or {}
    return {str(k): str(v) for k, v in values.items() if v is not None}


def configured_api_url() -> str | None:
    """``PREFECT_API_URL`` from the environment or the active profile (what Prefect would use)."""
    return os.environ.get("PREFECT_API_URL") or _profile_settings().get("PREFECT_API_URL") or None


def healthy(api_url: str, timeout: float = 1.0) -> bool:
    """Whether a Prefect API answers ``GET {api_url}/health`` with 200."""
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    conn_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_type(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path.rstrip("/") + "/health")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # reap it if it is our own child that ended (a zombie still answers kill 0)
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    return True


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _is_prefect_server(pid: int) -> bool:
    """The process is a Prefect API server (not a process that reused a dead server's pid)."""
    if not sys.platform.startswith("linux"):
        return _alive(pid)
    line = _cmdline(pid)
    return _alive(pid) and (APP_FACTORY in line or "prefect server start" in line or "prefect.server" in line)


@dataclass
class BackgroundServer:
    """A Prefect server that keeps running between audits, started by the user."""

    pid: int
    api_url: str
    started_by: str  # "audioqc server start", "audioqc audit" or "prefect server start --background"
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    prefect_home: str = ""
    started: float = 0.0  # time.time()
    log: str | None = None
    prefect_version: str | None = None
    idle_seconds: float = 0.0  # stops by itself after this long without an audit (0: never)

    @property
    def ui_url(self) -> str:
        return self.api_url[: -len("/api")] if self.api_url.endswith("/api") else self.api_url

    @property
    def ours(self) -> bool:
        """Started by audioqc (``audioqc server start`` or an audit's first use), not by Prefect's CLI."""
        return self.started_by.startswith("audioqc")


def _state_path() -> Path:
    return prefect_home() / STATE_FILE


def read_state() -> BackgroundServer | None:
    """What ``audioqc server start`` recorded (None: nothing, or an unreadable file)."""
    try:
        data = json.loads(_state_path().read_text())
        return BackgroundServer(**{k: data[k] for k in BackgroundServer.__dataclass_fields__ if k in data})
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _prefect_background() -> BackgroundServer | None:
    """A server ``prefect server start --background`` started in this PREFECT_HOME, if its pid lives."""
    try:
        pid = int((prefect_home() / PREFECT_PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    if not _is_prefect_server(pid):
        return None
    settings = _profile_settings()
    host = os.environ.get("PREFECT_SERVER_API_HOST") or settings.get("PREFECT_SERVER_API_HOST") or DEFAULT_HOST
    port = int(os.environ.get("PREFECT_SERVER_API_PORT") or settings.get("PREFECT_SERVER_API_PORT") or DEFAULT_PORT)
    if host in ("0.0.0.0", "::"):
        host = DEFAULT_HOST
    return BackgroundServer(pid=pid, api_url=f"http://{host}:{port}/api",
                            started_by="prefect server start --background", host=host, port=port,
                            prefect_home=str(prefect_home()))


def background(check_health: bool = True) -> BackgroundServer | None:
    """The background server an audit would use now: ``audioqc server start``'s, else Prefect's
    own background server, if its process lives and (``check_health``) its API answers."""
    for found in (read_state(), _prefect_background()):
        if found is not None and _is_prefect_server(found.pid) and (not check_health or healthy(found.api_url)):
            return found
    return None


def resolve() -> tuple[str, str | None]:
    """Which API an audit uses now, from the environment and the files (see the module):
    ``("configured", url)``, ``("background", url)`` or ``("temporary", None)``."""
    url = configured_api_url()
    if url:
        return "configured", url
    found = background()
    if found is not None:
        return "background", found.api_url
    return "temporary", None


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str = DEFAULT_HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _app_dir() -> str:
    """Where the ``prefect`` package is installed (uvicorn's ``--app-dir``), without importing it."""
    import importlib.util

    spec = importlib.util.find_spec("prefect")
    if spec is None or not spec.origin:
        raise ServerError("prefect", "is not installed")
    return str(Path(spec.origin).parent.parent)


def _uvicorn(host: str, port: int, log_level: str) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "--app-dir", _app_dir(), "--factory", APP_FACTORY,
            "--host", host, "--port", str(port), "--log-level", log_level, "--lifespan", "on"]


def _tail(path: Path | str | None, limit: int = 300) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:limit] if lines else ""


def _prefect_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("prefect")
    except Exception:
        return None


def _wait_healthy(proc: subprocess.Popen, api_url: str, timeout: float) -> int | None:
    """Poll until the API answers (None), the process exits (its status) or ``timeout`` passes (-1)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = proc.poll()
        if status is not None:
            return status
        if healthy(api_url, timeout=1.0):
            return None
        time.sleep(0.05)
    return -1


def auto_start() -> bool:
    """Whether an audit starts the background server when none runs (``AUDIOQC_PREFECT_SERVER``:
    ``auto``, the default, or ``temporary``: a temporary server for each audit instead)."""
    value = (os.environ.get(MODE_ENV) or "auto").strip().lower()
    if value not in ("auto", "temporary"):
        raise ServerError(f"{MODE_ENV}={value}", "give 'auto' (default: start a background server on first use) "
                                                 "or 'temporary' (a temporary server for each audit)")
    return value == "auto"


def idle_seconds() -> float:
    """How long a server started on first use waits without an audit before it stops (0: never):
    ``AUDIOQC_SERVER_IDLE_SECONDS``, else ``AUDIOQC_SERVER_IDLE_MINUTES`` (default 15)."""
    for name, scale in ((IDLE_SECONDS_ENV, 1.0), (IDLE_MINUTES_ENV, 60.0)):
        text = os.environ.get(name)
        if text:
            try:
                value = float(text) * scale
            except ValueError:
                value = -1.0
            if not value >= 0:
                raise ServerError(f"{name}={text}", "give a number >= 0 (0: the server keeps running)")
            return value
    return DEFAULT_IDLE_MINUTES * 60


@contextmanager
def _locked() -> Iterator[None]:
    """The background server's lock (``$PREFECT_HOME/audioqc-server.lock``): held while it is looked
    for and started, while an audit registers its use, and while its idle watch decides to stop."""
    import fcntl

    home = prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _start_token(pid: int) -> str:
    """What tells a process from a later one with the same pid: its start time (Linux), else ''."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _users_dir() -> Path:
    return prefect_home() / USERS_DIR


def active_users() -> list[int]:
    """The pids of the audits using the background server now (registered, process alive); the
    files of ended audits are removed."""
    out = []
    try:
        entries = list(os.scandir(_users_dir()))
    except OSError:
        return []
    for entry in entries:
        try:
            pid, token = int(entry.name), Path(entry.path).read_text().strip()
        except (OSError, ValueError):
            continue
        if _alive(pid) and _start_token(pid) == token:
            out.append(pid)
        else:
            Path(entry.path).unlink(missing_ok=True)
    return out


def last_use() -> float:
    """When the background server was last used (``time.time()``; 0: never): the newest of the
    use file and the files of the audits using it (touched while they run)."""
    paths = [prefect_home() / USE_FILE]
    try:
        paths += [Path(e.path) for e in os.scandir(_users_dir())]
    except OSError:
        pass
    times = []
    for path in paths:
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            continue
    return max(times, default=0.0)


class ServerUse:
    """An audit's use of the background server: registered when it starts using it (under the
    lock, with the server found), touched every ``interval`` s while it runs, and released at its
    end (the use file is touched: the server's idle time counts from there)."""

    def __init__(self, server: BackgroundServer) -> None:
        self.server = server
        self.path = _users_dir() / str(os.getpid())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def register(self) -> None:
        """Mark the use (call with the lock held)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(_start_token(os.getpid()) + "\n")
        (prefect_home() / USE_FILE).touch()

    def start_heartbeat(self) -> None:
        idle = self.server.idle_seconds
        interval = max(0.5, min(60.0, idle / 4)) if idle > 0 else 60.0

        def beat() -> None:
            while not self._stop.wait(interval):
                try:
                    os.utime(self.path)
                except OSError:
                    pass

        self._thread = threading.Thread(target=beat, name="audioqc-server-use", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        try:
            (prefect_home() / USE_FILE).touch()
            self.path.unlink(missing_ok=True)
        except OSError:
            pass


def _usable(found: BackgroundServer) -> bool:
    """A background server an audit may use: it answers, or it is audioqc's and still starting."""
    if healthy(found.api_url):
        return True
    return found.ours and 0 < time.time() - found.started < STARTING_GRACE_S


def acquire_background(start: bool, idle: float | None = None) -> tuple[ServerUse | None, bool]:
    """The background server this audit uses, its use registered (under the lock, so that the idle
    watch cannot stop it in between and concurrent first audits start one server): the one that
    runs, else (``start``) one started now, detached, stopping after ``idle`` s without audits
    (default :func:`idle_seconds`). Returns ``(use, started_now)``; ``(None, False)``: none (the
    audit makes a temporary server). A server started now may still be starting:
    :func:`wait_healthy` waits for it."""
    with _locked():
        found = background(check_health=False)
        if found is not None and not _usable(found):
            found = None
        started = False
        if found is None and start:
            settings = _profile_settings()
            port = int(os.environ.get("PREFECT_SERVER_API_PORT") or settings.get("PREFECT_SERVER_API_PORT")
                       or DEFAULT_PORT)
            if not _port_free(DEFAULT_HOST, port):
                port = _free_port()
            found, _ = _launch(DEFAULT_HOST, port, idle_seconds() if idle is None else idle, "audioqc audit")
            started = True
        if found is None:
            return None, False
        use = ServerUse(found)
        use.register()
    use.start_heartbeat()
    return use, started


def wait_healthy(server: BackgroundServer, timeout: float) -> bool:
    """Wait until a background server answers (True), or its process ends or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        if healthy(server.api_url):
            return True
        if not _is_prefect_server(server.pid) or time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _launch(host: str, port: int, idle: float, started_by: str) -> tuple[BackgroundServer, subprocess.Popen]:
    """Launch the background server (returns at once) and write its state file; with the lock held.
    Detached: its own session (not stopped with the terminal's process group or this process),
    stdin from /dev/null, stdout and stderr to its log, no other descriptor inherited (a daemon that
    held the caller's stdout would keep a pipeline or a CI step waiting), working directory
    PREFECT_HOME. It runs :func:`serve`: uvicorn with Prefect's app, plus the idle watch."""
    home = prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    _state_path().unlink(missing_ok=True)  # a stale one (its process is gone)
    log_path = home / LOG_FILE
    env = {**os.environ, "PREFECT__SERVER_FINAL": "1"}
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.pop("PREFECT_API_URL", None)
    root = str(Path(__file__).resolve().parents[1])  # flows/ importable from PREFECT_HOME
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [os.environ.get("PYTHONPATH")])])
    cmd = [sys.executable, "-m", "flows.server", "serve", "--idle-seconds", str(idle), "--",
           *_uvicorn(host, port, "warning")[3:]]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, cwd=str(home))
    server = BackgroundServer(pid=proc.pid, api_url=f"http://{host}:{port}/api", started_by=started_by, host=host,
                              port=port, prefect_home=str(home), started=time.time(), log=str(log_path),
                              prefect_version=_prefect_version(), idle_seconds=idle)
    tmp = _state_path().with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(server), indent=1) + "\n")
    os.replace(tmp, _state_path())
    return server, proc


def start_background(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, timeout: float = 90.0,
                     idle: float = 0.0) -> tuple[BackgroundServer, bool]:
    """Start a Prefect server in the background (``audioqc server start``): it keeps running until
    :func:`stop_background`, or (``idle`` > 0) until ``idle`` s pass without an audit. Prefect's
    API with its UI and services, as ``prefect server start`` runs it, on the database of
    ``PREFECT_HOME``. Returns the server and whether it was started now (False: one was running
    already, or starting: this waits for it)."""
    if not 0 < port < 65536:
        raise ServerError(f"--port {port}", "give a port from 1 to 65535")
    with _locked():
        running = background(check_health=False)
        if running is None:
            if not _port_free(host, port):
                raise ServerError(f"{host}:{port}", f"the port is in use (a Prefect server already? then audits use "
                                                    f"it with PREFECT_API_URL=http://{host}:{port}/api); choose "
                                                    "another with --port")
            server, proc = _launch(host, port, idle, "audioqc server start")
    if running is not None:
        if not wait_healthy(running, timeout if _usable(running) else 3.0):
            raise ServerError(running.api_url, f"a background server is running (pid {running.pid}) but does not "
                                               "answer: 'audioqc server stop', then start again")
        return running, False
    status = _wait_healthy(proc, server.api_url, timeout)
    if status is not None:
        _kill_group(proc.pid)
        _state_path().unlink(missing_ok=True)
        why = "did not answer in time" if status == -1 else f"exited with status {status}"
        tail = _tail(server.log)
        raise ServerError(server.api_url, f"the server {why}" + (f": {tail}" if tail else "") + f" (log: {server.log})")
    return server, True


def _kill_group(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the server's process group (it leads its own session), SIGKILL after ``grace`` s."""
    def send(sig: int) -> None:
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass

    send(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        send(signal.SIGKILL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)


def stop_background() -> BackgroundServer | None:
    """Stop the server ``audioqc server start`` started (None: there was none running)."""
    with _locked():
        server = read_state()
        if server is None:
            return None
        running = _is_prefect_server(server.pid)
        _state_path().unlink(missing_ok=True)  # audits from now on do not pick it
    if running:
        _kill_group(server.pid)
    return server if running else None


def prefect_servers() -> list[dict[str, Any]]:
    """Prefect API servers running on this machine under this user (Linux, from /proc): pid, kind
    (``temporary`` for an audit's own, ``background``, ``other``) and the pid of the process that
    owns a temporary one."""
    if not sys.platform.startswith("linux"):
        return []
    known = background(check_health=False)
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        line = _cmdline(pid)
        if APP_FACTORY not in line and "prefect server start" not in line:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                ephemeral = b"PREFECT__SERVER_EPHEMERAL=1" in f.read()
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue
            parent = int(fields[1])
        except (OSError, ValueError, IndexError):
            continue
        kind = "background" if known and pid == known.pid else "temporary" if ephemeral else "other"
        out.append({"pid": pid, "kind": kind, "parent": parent, "parent_cmd": _cmdline(parent)[:200],
                    "cmd": line[:200]})
    return sorted(out, key=lambda d: d["pid"])


class TemporaryServer:
    """Prefect's API for one audit: a uvicorn subprocess of Prefect's app (ephemeral: no UI, only
    the services runs need), as Prefect's ``SubprocessASGIServer`` runs it (prefect 3.8), but
    started without importing Prefect, so that the audit's imports and listing run while it
    starts; it dies with the audit (``PR_SET_PDEATHSIG``) however that ends, and its output goes
    to a file, shown only if it fails to start (Prefect's logs stay off the terminal)."""

    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self.extra_env = dict(extra_env or {})
        self.proc: subprocess.Popen | None = None
        self.port: int | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="audioqc-prefect-server-", suffix=".log", delete=False)
        self.started_at: float | None = None

    @property
    def api_url(self) -> str:
        return f"http://{DEFAULT_HOST}:{self.port}/api"

    def start(self) -> None:
        """Launch the server (returns at once; :meth:`wait` waits for its API)."""
        from flows.lifetime import die_with_parent

        self.port = _free_port()
        env = {**os.environ, **self.extra_env, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
               "PREFECT__SERVER_FINAL": "1"}
        env.pop("PREFECT_API_URL", None)
        self.started_at = time.perf_counter()
        # from the main thread: PR_SET_PDEATHSIG fires when the thread that forked the child ends
        self.proc = subprocess.Popen(_uvicorn(DEFAULT_HOST, self.port, "error"), env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
                                     close_fds=True)

    def wait(self, timeout: float = 90.0) -> None:
        """Wait until the API answers; a taken port is retried on another one."""
        assert self.proc is not None, "start() first"
        deadline = time.monotonic() + timeout
        while True:
            status = _wait_healthy(self.proc, self.api_url, max(0.0, deadline - time.monotonic()))
            if status is None:
                return
            if status == _UVICORN_STARTUP_FAILURE and time.monotonic() < deadline:
                self.start()  # the port was taken between choosing and binding it
                continue
            self.stop()
            why = "did not answer in time" if status == -1 else f"exited with status {status}"
            raise ServerError("temporary Prefect server", f"{why}" + (f": {_tail(self._log.name)}"
                                                                     if _tail(self._log.name) else ""))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
        try:
            self._log.close()
            os.unlink(self._log.name)
        except OSError:
            pass


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} audioqc: {message}", flush=True)


def _idle_watch(idle: float, pid: int, started: float) -> None:
    """In the background server's process: stop it (SIGTERM: uvicorn's clean shutdown) once
    ``idle`` s have passed since the last audit used it and none uses it now. The decision is taken
    with the lock held and the state file removed with it, so that an audit either registered its
    use before (and the server stays) or finds no server after (and starts a new one)."""
    step = max(0.2, min(30.0, idle / 4))
    while True:
        time.sleep(step)
        if not prefect_home().is_dir():  # PREFECT_HOME removed (a temporary one): nothing can use it
            _log("PREFECT_HOME is gone: stopping")
            break
        with _locked():
            state = read_state()
            # no longer findable (the state file removed or replaced): stop once no audit uses it
            findable = state is not None and state.pid == pid
            if active_users() or (findable and time.time() - max(started, last_use()) < idle):
                continue
            if findable:
                _state_path().unlink(missing_ok=True)
        _log(f"no audit for {idle:.0f} s: stopping (AUDIOQC_SERVER_IDLE_MINUTES)" if findable
             else "its state file is gone: stopping")
        break
    os.kill(pid, signal.SIGTERM)
    time.sleep(60)  # a clean shutdown takes a few seconds; never linger
    _log("not stopped after 60 s: killed")
    os.kill(pid, signal.SIGKILL)


def serve(argv: list[str]) -> int:
    """``python -m flows.server serve --idle-seconds S -- UVICORN_ARGS``: the background server's
    process (see :func:`_launch`): the idle watch in a thread, then uvicorn in the main thread."""
    idle = float(argv[argv.index("--idle-seconds") + 1])
    rest = argv[argv.index("--") + 1:]
    pid, started = os.getpid(), time.time()
    _log(f"Prefect server starting (pid {pid}); "
         + (f"stops after {idle:.0f} s without an audit" if idle > 0 else "keeps running until 'audioqc server stop'"))
    if idle > 0:
        threading.Thread(target=_idle_watch, args=(idle, pid, started), name="audioqc-idle-watch", daemon=True).start()
    sys.argv = ["uvicorn", *rest]
    from uvicorn.main import main as uvicorn_main

    try:
        uvicorn_main()
    except SystemExit as e:
        return int(e.code or 0) if isinstance(e.code, int) or e.code is None else 1
    finally:
        with _locked():
            state = read_state()
            if state is not None and state.pid == pid:
                _state_path().unlink(missing_ok=True)
        _log("Prefect server stopped")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        sys.exit(serve(sys.argv[2:]))
    sys.exit("usage: python -m flows.server serve --idle-seconds S -- UVICORN_ARGS")
