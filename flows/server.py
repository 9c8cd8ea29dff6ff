"""Which Prefect API an audit records its runs on, and the Prefect servers audioqc starts.

An audit uses, in this order (:func:`resolve`):

1. **a configured API**: ``PREFECT_API_URL`` (the environment or the active Prefect profile), as
   Prefect itself would; used as it is;
2. **a background server that is up**: the one ``audioqc server start`` started (its state file
   ``$PREFECT_HOME/audioqc-server.json``), or one ``prefect server start --background`` started
   (``$PREFECT_HOME/server.pid``, at ``PREFECT_SERVER_API_HOST``:``PREFECT_SERVER_API_PORT``), if
   it answers ``/api/health``. It keeps running between audits because the user started it, and
   stops with ``audioqc server stop`` (or ``prefect server stop``);
3. otherwise **a temporary server** for this audit alone (:class:`TemporaryServer`): Prefect's API
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
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from audiolib.errors import AudioQCError

#: The state file ``audioqc server start`` writes in ``PREFECT_HOME``.
STATE_FILE = "audioqc-server.json"
#: Its log, beside it.
LOG_FILE = "audioqc-server.log"
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
    started_by: str  # "audioqc server start" or "prefect server start --background"
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    prefect_home: str = ""
    started: float = 0.0  # time.time()
    log: str | None = None
    prefect_version: str | None = None

    @property
    def ui_url(self) -> str:
        return self.api_url[: -len("/api")] if self.api_url.endswith("/api") else self.api_url


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


def start_background(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, timeout: float = 90.0
                     ) -> tuple[BackgroundServer, bool]:
    """Start a Prefect server in the background that the user owns: it keeps running (its own
    session: not stopped with the terminal's process group, not with this process) until
    :func:`stop_background`. Prefect's API with its UI and services, as ``prefect server start``
    runs it, on the database of ``PREFECT_HOME``. Returns the server and whether it was started
    now (False: one was running already)."""
    running = background(check_health=False)
    if running is not None:
        if not healthy(running.api_url, timeout=3.0):
            raise ServerError(running.api_url, f"a background server is running (pid {running.pid}) but does not "
                                               "answer: 'audioqc server stop', then start again")
        return running, False
    if not 0 < port < 65536:
        raise ServerError(f"--port {port}", "give a port from 1 to 65535")
    if not _port_free(host, port):
        raise ServerError(f"{host}:{port}", f"the port is in use (a Prefect server already? then audits use it "
                                            f"with PREFECT_API_URL=http://{host}:{port}/api); choose another with "
                                            "--port")
    home = prefect_home()
    home.mkdir(parents=True, exist_ok=True)
    _state_path().unlink(missing_ok=True)  # a stale one (its process is gone)
    log_path = home / LOG_FILE
    env = {**os.environ, "PREFECT__SERVER_FINAL": "1"}
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.pop("PREFECT_API_URL", None)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(_uvicorn(host, port, "warning"), env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    api_url = f"http://{host}:{port}/api"
    status = _wait_healthy(proc, api_url, timeout)
    if status is not None:
        _kill_group(proc.pid)
        why = "did not answer in time" if status == -1 else f"exited with status {status}"
        raise ServerError(api_url, f"the server {why}" + (f": {_tail(log_path)}" if _tail(log_path) else "")
                          + f" (log: {log_path})")
    server = BackgroundServer(pid=proc.pid, api_url=api_url, started_by="audioqc server start", host=host, port=port,
                              prefect_home=str(home), started=time.time(), log=str(log_path),
                              prefect_version=_prefect_version())
    tmp = _state_path().with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(server), indent=1) + "\n")
    os.replace(tmp, _state_path())
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
    server = read_state()
    if server is None:
        return None
    running = _is_prefect_server(server.pid)
    if running:
        _kill_group(server.pid)
    _state_path().unlink(missing_ok=True)
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
