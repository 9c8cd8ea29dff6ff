"""Which Prefect server an audit records on, and the start-up before its flow (issue 19, item 2),
with real components: a background Prefect server started by `audioqc server start` in a
temporary PREFECT_HOME, temporary servers, the CLI in subprocesses, the runs read back from
Prefect's API.

- `audioqc server start|status|stop`: a server the user owns, that audits use while it runs,
  that survives the audits, and that `stop` ends; `status` says what runs; a dead server's state
  file, a taken port and a second start are handled in one line.
- An audit records on the background server (flow run, task runs, artifacts), including the
  steps the start-up did before Prefect was imported (listing, report state), which are still
  task runs.
- Without a background server the audit's temporary server stops with it.
- An unchanged re-audit starts no worker process (no fork server, no pool).
- The flow process never starts a Prefect server of its own (the regression of this change: the
  process pool's message thread started one when the global settings had no API).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from audiolib import io
from conftest import AUDIOQC, SR, Run, programme, run_cli

pytestmark = pytest.mark.timeout(900)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def collection(root: Path, n: int = 4) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        io.write(str(root / f"f{i}.wav"), programme(2.0 + i, seed=40 + i), SR, codec="pcm_s16le", sample_fmt="s16")
    return root


def home_env(home: Path, **extra: str) -> dict[str, str]:
    """An environment with its own PREFECT_HOME and no configured API."""
    env = {"PREFECT_HOME": str(home), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90", **extra}
    return env


def clean_env(env: dict[str, str]) -> dict[str, str]:
    out = {**os.environ, **env}
    out.pop("PREFECT_API_URL", None)
    out.pop("PREFECT_PROFILE", None)
    return out


def cli(*args: str, env: dict[str, str], timeout: float = 600):
    # run_cli adds env to os.environ; PREFECT_API_URL must not come from the test's process
    saved = os.environ.pop("PREFECT_API_URL", None)
    try:
        return run_cli(*args, env=env, timeout=timeout)
    finally:
        if saved is not None:
            os.environ["PREFECT_API_URL"] = saved


def quiet(run) -> None:
    """Prefect's own log lines stay off the terminal without --verbose (the workers' too: their
    fork server starts before Prefect is imported, and must inherit the quiet settings)."""
    assert "Finished in state" not in run.stdout + run.stderr and " | INFO " not in run.stdout + run.stderr, \
        (run.stdout + run.stderr)[-2000:]
    assert run.stderr.strip() == "", run.stderr[-2000:]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def background(tmp_path_factory):
    """`audioqc server start` in a fresh PREFECT_HOME; stopped at the end of the module."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = home_env(home)
    run = cli("server", "start", "--port", str(port), env=env, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    state = json.loads((home / "audioqc-server.json").read_text())
    yield {"home": home, "env": env, "port": port, "url": f"http://127.0.0.1:{port}", "pid": state["pid"],
           "start": run}
    cli("server", "stop", env=env)
    if alive(state["pid"]):  # never leave it behind
        os.killpg(state["pid"], signal.SIGKILL)


def api_get(url: str, path: str, body: dict | None = None):
    import httpx

    with httpx.Client(base_url=url + "/api", timeout=30) as c:
        r = c.post(path, json=body or {}) if body is not None else c.get(path)
        r.raise_for_status()
        return r.json()


def test_start_status_and_the_audits_that_use_it(background, tmp_path):
    env, url = background["env"], background["url"]
    start = background["start"]
    assert f"started at {url}" in start.stdout and "audioqc server stop" in start.stdout
    again = cli("server", "start", "--port", str(background["port"]), env=env)
    assert again.returncode == 0 and "already running" in again.stdout
    status = cli("server", "status", env=env)
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"running at {url}" in status.stdout and f"audits use: {url}/api" in status.stdout

    media = collection(tmp_path / "m")
    report_dir = tmp_path / "r"
    first = cli("audit", str(media), "--report", str(report_dir), "--policy", "ebu-r128", "--run-id", "bg1", env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "analysed 4, reused 0" in first.stdout
    quiet(first)
    line = next(ln for ln in first.stdout.splitlines() if "flow run:" in ln)
    flow_run_id = line.rsplit("/", 1)[1]
    assert line.strip() == f"flow run: {url}/runs/flow-run/{flow_run_id}"

    # what Prefect gives is all there: the flow run, every step a task run, the artifacts
    flow_run = api_get(url, f"/flow_runs/{flow_run_id}")
    assert flow_run["state_type"] == "COMPLETED" and flow_run["parameters"]["run_id"] == "bg1"
    deadline = time.monotonic() + 30  # task run states arrive as events: recorded shortly after
    while True:
        task_runs = api_get(url, "/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run_id]}}})
        names = sorted(t["name"].rsplit("-", 1)[0] for t in task_runs)
        if all(t["state_type"] == "COMPLETED" for t in task_runs) and "write report part" in names \
                or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert all(t["state_type"] == "COMPLETED" for t in task_runs), [(t["name"], t["state_type"]) for t in task_runs]
    # the listing and the state the start-up read before Prefect was imported are task runs too
    assert {"list media", "read report state", "write report part"} <= set(names), names
    assert sum(1 for n in names if n.startswith("diagnose ")) >= 2  # the 4 files spread over 2 workers
    found = api_get(url, "/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}})
    keys = {a["key"] for a in found}
    assert {"audit-summary", "audit-report"} <= keys

    again = cli("audit", str(media), "--report", str(report_dir), "--policy", "ebu-r128", env=env)
    assert again.returncode == 0 and "analysed 0, reused 4" in again.stdout
    assert alive(background["pid"])  # the audits leave it running
    status = cli("server", "status", env=env)
    assert status.returncode == 0 and "running at" in status.stdout


def test_stop_a_dead_servers_state_and_a_taken_port(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = home_env(home)
    stopped = cli("server", "stop", env=env)
    assert stopped.returncode == 0 and "no audioqc Prefect server running" in stopped.stdout
    # a state file whose process is gone: not running, an audit makes its own temporary server
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (home / "audioqc-server.json").write_text(json.dumps({"pid": dead.pid, "api_url": "http://127.0.0.1:9/api",
                                                          "started_by": "audioqc server start"}))
    status = cli("server", "status", env=env)
    assert status.returncode == 1 and "audioqc server: not running" in status.stdout
    assert "a temporary Prefect server each" in status.stdout
    # a configured API is what audits use, and status says so
    status = run_cli("server", "status", env={**env, "PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert "audits use: http://127.0.0.1:9/api (PREFECT_API_URL; not answering)" in status.stdout
    # a port in use: one line, exit 1, nothing left behind
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        run = cli("server", "start", "--port", str(taken), env=env)
    assert run.returncode == 1 and len(run.lines) == 1 and "the port is in use" in run.lines[0], run.stderr
    assert "Traceback" not in run.stderr
    assert not (home / "audioqc-server.json").exists() or json.loads((home / "audioqc-server.json").read_text())[
        "pid"] == dead.pid


def test_stop_ends_the_server(tmp_path):
    home = tmp_path / "home"
    env = home_env(home)
    port = free_port()
    run = cli("server", "start", "--port", str(port), env=env, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    pid = json.loads((home / "audioqc-server.json").read_text())["pid"]
    try:
        assert alive(pid)
        stop = cli("server", "stop", env=env)
        assert stop.returncode == 0 and f"stopped (pid {pid})" in stop.stdout
        deadline = time.monotonic() + 15
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(pid) and not (home / "audioqc-server.json").exists()
        status = cli("server", "status", env=env)
        assert status.returncode == 1 and "not running" in status.stdout
    finally:
        if alive(pid):
            os.killpg(pid, signal.SIGKILL)


def test_temporary_server_ends_with_the_audit(tmp_path):
    """No background server: the audit starts its own, which is gone when the command returns."""
    media = collection(tmp_path / "m", 2)
    marker = uuid.uuid4().hex
    env = home_env(tmp_path / "home", AUDIOQC_TEST_MARKER=marker)
    run = cli("audit", str(media), "--report", str(tmp_path / "r"), env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "flow run:" not in run.stdout and "analysed 2, reused 0" in run.stdout
    quiet(run)
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"AUDIOQC_TEST_MARKER={marker}".encode() in f.read() and alive(int(pid)):
                    left.append(int(pid))
        except OSError:
            continue
    deadline = time.monotonic() + 10  # helpers get SIGKILL from the kernel as the CLI exits
    while left and time.monotonic() < deadline:
        left = [p for p in left if alive(p)]
        time.sleep(0.1)
    assert left == []


# run_audit in a fresh interpreter: which server it used, whether Prefect's server module was ever
# imported in the flow process (it is only needed to start a server of its own), and whether the
# worker fork server was started
PROBE = textwrap.dedent("""
    import json, sys
    from tasks import compute
    from flows.audit import run_audit
    s = run_audit(sys.argv[1], sys.argv[2], workers=2, batch_size=1)
    print(json.dumps({"kind": s["prefect_api"]["kind"], "analysed": s["analysed"], "reused": s["reused"],
                      "server_module": "prefect.server.api.server" in sys.modules,
                      "fork_server": compute.running()}))
""")


def probe(media: Path, report_dir: Path, env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", PROBE, str(media), str(report_dir)], capture_output=True, text=True,
                          env=clean_env(env), timeout=600, cwd=str(Path(__file__).resolve().parents[1]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mode", ["temporary", "background"])
def test_reaudit_starts_no_worker_and_no_server_of_its_own(mode, background, tmp_path):
    env = background["env"] if mode == "background" else home_env(tmp_path / "home")
    media = collection(tmp_path / "m", 3)
    first = probe(media, tmp_path / "r", env)
    assert first == {"kind": mode, "analysed": 3, "reused": 0, "server_module": False, "fork_server": True}
    again = probe(media, tmp_path / "r", env)
    assert again == {"kind": mode, "analysed": 0, "reused": 3, "server_module": False, "fork_server": False}


def test_small_collections_spread_over_the_workers():
    """The 8 demo files (14 MB) were one batch of 7 and one of 1: now every worker has some."""
    from flows.batching import guided_batches as _guided_batches
    from tasks.storage import MediaObject

    sizes = [2_304_078, 166_486, 160_941, 2_116_878, 51_653, 455_743, 6_912_102, 1_920_078]
    objs = [MediaObject(f"f{i}", s, None, None) for i, s in enumerate(sizes)]
    batches = list(_guided_batches(objs, 32, 2))
    assert [o.url for b in batches for o in b] == [o.url for o in objs]
    assert len(batches) >= 4 and max(len(b) for b in batches) <= 2
    assert [len(b) for b in _guided_batches(objs, 32, 1)] == [8]  # one worker: one batch


def test_a_prefect_background_server_is_found_and_used(tmp_path):
    """A server as `prefect server start --background` runs it (as Prefect users do), in the same PREFECT_HOME: audits
    use it, `audioqc server status` says so, and `prefect server stop` is what stops it."""
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    env = home_env(home, PREFECT_SERVER_API_PORT=str(port))
    prefect = str(Path(sys.executable).parent / "prefect")
    # What `prefect server start --background` leaves (prefect 3.8, cli/_server_utils.py): uvicorn
    # running Prefect's app factory, its pid in PREFECT_HOME/server.pid. Started here as it starts
    # it, but with its output in a file: the CLI gives it pipes that nobody reads once the CLI has
    # exited, and the server dies at its first log line after that (~10 s here).
    from flows.server import APP_FACTORY, _app_dir

    with open(tmp_path / "server.log", "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "uvicorn", "--app-dir", _app_dir(), "--factory", APP_FACTORY,
                                   "--host", "127.0.0.1", "--port", str(port)],
                                  env={**clean_env(env), "PREFECT__SERVER_FINAL": "1"}, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    pid = server.pid
    (home / "server.pid").write_text(str(pid))
    try:
        from flows.server import healthy

        deadline = time.monotonic() + 120
        while not healthy(f"http://127.0.0.1:{port}/api") and time.monotonic() < deadline:
            time.sleep(0.2)
        status = cli("server", "status", env=env)
        assert status.returncode == 1 and "audioqc server: not running" in status.stdout  # not ours
        assert f"audits use: http://127.0.0.1:{port}/api (started by 'prefect server start --background')" \
            in status.stdout, status.stdout
        media = collection(tmp_path / "m", 2)
        run = cli("audit", str(media), "--report", str(tmp_path / "r"), env=env)
        assert run.returncode == 0, run.stderr[-2000:]
        assert f"flow run: http://127.0.0.1:{port}/runs/flow-run/" in run.stdout
        quiet(run)
    finally:
        subprocess.run([prefect, "server", "stop"], env=clean_env(env), capture_output=True, timeout=60)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# ---- the background server started on first use (AUDIOQC_PREFECT_SERVER=auto), idle shutdown, opt-out


def marked(marker: str, server_only: bool = False) -> list[int]:
    """Live processes whose environment holds ``AUDIOQC_TEST_MARKER=marker`` (Prefect servers only)."""
    from flows.server import APP_FACTORY, _cmdline

    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"AUDIOQC_TEST_MARKER={marker}".encode() not in f.read():
                    continue
        except OSError:
            continue
        if alive(int(pid)) and (not server_only or APP_FACTORY in _cmdline(int(pid))):
            out.append(int(pid))
    return out


@pytest.fixture
def auto(tmp_path):
    """An environment where audits start the background server on first use, in a PREFECT_HOME of
    its own; whatever it started is stopped at the end, and nothing is left running."""
    marker = uuid.uuid4().hex
    port = free_port()
    env = home_env(tmp_path / "home", AUDIOQC_PREFECT_SERVER="auto", AUDIOQC_TEST_MARKER=marker,
                   PREFECT_SERVER_API_PORT=str(port), AUDIOQC_SERVER_IDLE_SECONDS="600")
    yield {"env": env, "home": tmp_path / "home", "port": port, "marker": marker,
           "url": f"http://127.0.0.1:{port}"}
    cli("server", "stop", env=env)
    deadline = time.monotonic() + 20
    while marked(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in marked(marker):  # never leave one behind
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    assert marked(marker) == []


def notice(run) -> list[str]:
    return [ln for ln in run.lines if "started a background Prefect server" in ln]


def test_first_audits_start_one_server_and_the_next_audit_reuses_it(auto, tmp_path):
    env, url = auto["env"], auto["url"]
    media = collection(tmp_path / "m", 2)
    # two first audits at once: one server (the lock), both record on it, one says it started it
    procs = [subprocess.Popen([*AUDIOQC, "audit", str(media), "--report",
                               str(tmp_path / f"r{i}")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=clean_env(env)) for i in range(2)]
    runs = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        runs.append(Run(proc.returncode, out, err, 0.0))
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
        assert f"flow run: {url}/runs/flow-run/" in run.stdout and "analysed 2, reused 0" in run.stdout
    said = [ln for run in runs for ln in notice(run)]
    assert len(said) == 1, [run.stderr for run in runs]
    assert f"at {url} " in said[0] and "stops after 10 min without an audit" in said[0] \
        and "'audioqc server stop' stops it now" in said[0]
    assert all(run.lines == notice(run) for run in runs)  # that line and nothing else on stderr
    state = json.loads((auto["home"] / "audioqc-server.json").read_text())
    assert state["started_by"] == "audioqc audit" and state["api_url"] == f"{url}/api"
    assert marked(auto["marker"], server_only=True) == [state["pid"]]

    # the next audit (an unchanged re-audit) uses it: same URL, no notice, no second server
    again = cli("audit", str(media), "--report", str(tmp_path / "r0"), env=env)
    assert again.returncode == 0 and "analysed 0, reused 2" in again.stdout, again.stderr[-2000:]
    assert f"flow run: {url}/runs/flow-run/" in again.stdout
    quiet(again)
    assert marked(auto["marker"], server_only=True) == [state["pid"]]
    status = cli("server", "status", env=env)
    assert status.returncode == 0 and "started by 'audioqc audit'" in status.stdout, status.stdout
    stop = cli("server", "stop", env=env)
    assert f"stopped (pid {state['pid']})" in stop.stdout


def test_idle_shutdown_and_a_daemon_that_leaves_the_callers_stdout(auto, tmp_path):
    """A 3 s idle time, shorter than the audit itself: the audit is not cut off (its use is
    registered from its start), the server stops by itself after it; the CLI's stdout and stderr
    pipes close when the CLI exits (the server does not hold them)."""
    import selectors

    env = {**auto["env"], "AUDIOQC_SERVER_IDLE_SECONDS": "3"}
    media = collection(tmp_path / "m", 2)
    proc = subprocess.Popen([*AUDIOQC, "audit", str(media), "--report", str(tmp_path / "r")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env(env))
    assert proc.wait(timeout=600) == 0
    # the CLI has exited: both pipes reach their end at once, although the server still runs
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    for stream in (proc.stdout, proc.stderr):
        os.set_blocking(stream.fileno(), False)
        sel.register(stream, selectors.EVENT_READ)
    data: dict[int, bytes] = {proc.stdout.fileno(): b"", proc.stderr.fileno(): b""}
    open_streams = 2
    deadline = time.monotonic() + 30
    while open_streams and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1):
            chunk = os.read(key.fd, 65536)
            if chunk:
                data[key.fd] += chunk
            else:
                sel.unregister(key.fileobj)
                open_streams -= 1
    assert open_streams == 0, "a pipe of the CLI stayed open after it exited"
    out, err = data[proc.stdout.fileno()].decode(), data[proc.stderr.fileno()].decode()
    assert f"flow run: {auto['url']}/runs/flow-run/" in out and "stops after 3 s without an audit" in err, out + err
    pid = json.loads((auto["home"] / "audioqc-server.json").read_text())["pid"]
    deadline = time.monotonic() + 180
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive(pid), "the server did not stop after its idle time"
    assert not (auto["home"] / "audioqc-server.json").exists()
    assert "no audit for 3 s: stopping" in (auto["home"] / "audioqc-server.log").read_text()


@pytest.mark.parametrize("how", ["env", "flag"])
def test_opt_out_keeps_a_temporary_server(how, auto, tmp_path):
    env = {**auto["env"], "AUDIOQC_PREFECT_SERVER": "temporary"} if how == "env" else auto["env"]
    media = collection(tmp_path / "m", 1)
    run = cli("audit", str(media), "--report", str(tmp_path / "r"),
              *(["--temporary-server"] if how == "flag" else []), env=env)
    assert run.returncode == 0 and "analysed 1, reused 0" in run.stdout, run.stderr[-2000:]
    assert "flow run:" not in run.stdout
    quiet(run)
    assert not (auto["home"] / "audioqc-server.json").exists()
    deadline = time.monotonic() + 10  # the temporary server gets SIGKILL from the kernel as the CLI exits
    while marked(auto["marker"], server_only=True) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marked(auto["marker"], server_only=True) == []
