"""``audioqc serve`` end to end: a real server (uvicorn in a subprocess) on 127.0.0.1, real HTTP
and websocket clients, S3 on 127.0.0.1 (moto) for URL inputs and presigned PUT outputs, a webhook
receiver run by the test. Every success is compared with the CLI's output for the same file."""

from __future__ import annotations

import base64
import concurrent.futures
import json
import time
from pathlib import Path

import boto3
import httpx
import numpy as np
import pytest

from service_support import KEY, OTHER_KEY, Recorder, Server, cli, decoded, make_media

BUCKET = "service-media"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    return make_media(tmp_path_factory.mktemp("service-media"))


@pytest.fixture(scope="module")
def s3c(s3, files):
    import os

    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL_S3"], region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    for name, path in files.items():
        client.upload_file(str(path), BUCKET, name)
    client.put_object(Bucket=BUCKET, Key="big.wav", Body=b"\0" * (5 << 20))
    return client


def get_url(s3c, key: str) -> str:
    return s3c.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=3600)


def put_url(s3c, key: str) -> str:
    return s3c.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=3600)


@pytest.fixture(scope="module")
def server(tmp_path_factory, s3c):
    srv = Server(tmp_path_factory.mktemp("svc") / "data", "--allow-private-urls", "--workers", "2",
                 "--max-queue", "8", "--max-upload-mb", "4").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def api(server):
    with server.client() as c:
        yield c


@pytest.fixture()
def recorder():
    r = Recorder()
    yield r
    r.close()


def wait_state(api: httpx.Client, url: str, done: tuple[str, ...], key: str = "status", timeout: float = 180):
    """Poll a status URL until its ``key`` is in ``done``; returns every distinct body seen."""
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = api.get(url)
        assert r.status_code == 200, r.text
        body = r.json()
        if not seen or seen[-1] != body:
            seen.append(body)
        if body[key] in done:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"not done: {seen[-3:]}")


# --- success paths, compared with the CLI ------------------------------------------------------

def test_silence_envelope_equals_the_cli(api, files, s3c):
    r = api.post("/v1/media/silence", json={"media_url": get_url(s3c, "gaps.wav"), "duration": 0.5, "id": "req-1"})
    assert r.status_code == 200, r.text
    env = r.json()
    assert env["code"] == 200 and env["message"] == "success" and env["id"] == "req-1"
    assert env["endpoint"] == "/v1/media/silence"
    for key in ("job_id", "pid", "queue_id", "run_time", "queue_time", "total_time", "queue_length", "build_number"):
        assert env[key] is not None, key
    assert env["response"] == cli("silence", str(files["gaps.wav"]), "--duration", "0.5")
    # the known answer: the three digital silences
    assert [(round(i["start"], 3), round(i["end"], 3)) for i in env["response"]] == [(0, 1), (4, 5.5), (9, 10)]
    body = {"media_url": get_url(s3c, "gaps.wav"), "duration": 0.3, "noise": "-40dB", "mono": False,
            "start": "00:00:00.500", "end": "9.5"}
    r = api.post("/v1/media/silence", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["response"] == cli("silence", str(files["gaps.wav"]), "--duration", "0.3", "--noise", "-40dB",
                                       "--no-mono", "--start", "00:00:00.500", "--end", "9.5")


def test_silence_webhook_retried_and_a_hanging_one_blocks_nothing(api, files, s3c, recorder):
    recorder.hang.add("/never")
    r = api.post("/v1/media/silence", json={"media_url": get_url(s3c, "gaps.wav"), "duration": 0.5,
                                            "webhook_url": recorder.url + "/never"})
    assert r.status_code == 202, r.text
    recorder.post_status = [500]  # the first delivery fails: retried with backoff
    r = api.post("/v1/media/silence", json={"media_url": get_url(s3c, "gaps.wav"), "duration": 0.5, "id": "hook",
                                            "webhook_url": recorder.url + "/hook"})
    assert r.status_code == 202, r.text
    accepted = r.json()
    assert accepted["code"] == 202 and accepted["id"] == "hook"
    # while the first webhook hangs, the queue goes on: a synchronous request is answered
    r = api.post("/v1/media/silence", json={"media_url": get_url(s3c, "gaps.wav"), "duration": 0.5})
    assert r.status_code == 200
    posts = recorder.wait_posts(2)
    assert [p for p, _ in posts] == ["/hook", "/hook"]
    envelope = posts[-1][1]
    assert envelope["job_id"] == accepted["job_id"] and envelope["code"] == 200 and envelope["id"] == "hook"
    assert envelope["response"] == cli("silence", str(files["gaps.wav"]), "--duration", "0.5")
    # the envelope stays available to the key that made the job (an addition)
    again = api.get(f"/v1/media/silence/{accepted['job_id']}")
    assert again.status_code == 200 and again.json()["response"] == envelope["response"]


def test_sami_loudness_equals_the_cli(server, files, s3c):
    with server.client(key=None) as anon:
        want = cli("loudness", str(files["gaps.wav"]), "--sami")
        # SAMI's client: token in the query, payload.url
        r = anon.post(f"/api/v1/invoke?version=v4&token={KEY}&appkey=app&namespace=LoudnessDetect",
                      json={"payload": json.dumps({"url": get_url(s3c, "gaps.wav")})})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["status_code"] == 20000000 and out["status_text"] == "OK" and out["namespace"] == "LoudnessDetect"
        assert json.loads(out["payload"]) == want and out["task_id"]
        # SAMI's Python example: everything in the body, data as base64
        data = base64.b64encode(files["gaps.wav"].read_bytes()).decode()
        r = anon.post("/api/v1/invoke", json={"appkey": "app", "token": KEY, "namespace": "LoudnessDetect",
                                              "payload": json.dumps({"extra": {}}), "data": data})
        assert r.status_code == 200, r.text
        assert json.loads(r.json()["payload"]) == want
    with server.client() as api:
        quiet = base64.b64encode(files["quiet.wav"].read_bytes()).decode()
        r = api.post("/api/v1/invoke?namespace=LoudnessDetect", json={"data": quiet})
        assert json.loads(r.json()["payload"])["loudness"] == -100  # the document's near-silence value
        assert json.loads(r.json()["payload"]) == cli("loudness", str(files["quiet.wav"]), "--sami")
        # raw PCM with audio_info: the same samples as the WAV's
        wav = files["gaps.wav"].read_bytes()
        pcm = wav[wav.index(b"data") + 8:]
        r = api.post("/api/v1/invoke?namespace=LoudnessDetect", json={
            "data": base64.b64encode(pcm).decode(),
            "payload": json.dumps({"audio_info": {"format": "pcm", "sample_rate": 48000, "channel": 2}})})
        assert r.status_code == 200, r.text
        assert json.loads(r.json()["payload"]) == want


def test_audio_format_equals_the_cli(api, files, s3c, tmp_path):
    config = {"compressed_channels": [0, 1],
              "alarmSettings": {"enabled": True, "sensitivity": 0.5, "secsInAlarmDuration": 1,
                                "allowCompressedAudio": 0, "allowableAudioFormat": 64}}
    r = api.post("/v1/videos:annotate", json={"inputUri": get_url(s3c, "surround.wav"), "features": ["AUDIO_FORMAT"],
                                               "videoContext": {"audioFormatConfig": config}})
    assert r.status_code == 200, r.text
    (tmp_path / "alarms.json").write_text(json.dumps({"videoContext": {"audioFormatConfig": config}}))
    want = cli("format", str(files["surround.wav"]), "--alarms", str(tmp_path / "alarms.json"))
    assert r.json() == want
    assert want["audioFormatAnnotations"][0]["audioFormat"] == "5.1" and want["alarms"]  # 5.1 is not allowed: 64


def test_dolby_diagnose_equals_the_cli(api, files, s3c):
    r = api.post("/media/diagnose", json={"input": get_url(s3c, "gaps.wav")})
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    seen = wait_state(api, f"/media/diagnose?job_id={job_id}", ("Success", "Failed"))
    final = seen[-1]
    assert final["status"] == "Success" and final["progress"] == 100 and final["path"] == "/media/diagnose"
    assert all(s["status"] in ("Pending", "Running", "Success") for s in seen)
    assert [s["progress"] for s in seen] == sorted(s["progress"] for s in seen)
    assert final["result"] == cli("diagnose", str(files["gaps.wav"]))


def test_dolby_enhance_loudness_to_a_presigned_put(api, files, s3c, tmp_path):
    body = {"input": get_url(s3c, "gaps.wav"), "output": put_url(s3c, "enhanced/gaps.wav"),
            "audio": {"noise": {"reduction": {"enable": False}}, "loudness": {"target_level": -20, "peak_limit": -2}}}
    r = api.post("/media/enhance", json=body)
    assert r.status_code == 200, r.text
    seen = wait_state(api, f"/media/enhance?job_id={r.json()['job_id']}", ("Success", "Failed"))
    assert seen[-1]["status"] == "Success", seen[-1]
    out = tmp_path / "enhanced.wav"
    s3c.download_file(BUCKET, "enhanced/gaps.wav", str(out))
    sami = cli("loudness", str(out), "--sami")
    assert abs(sami["loudness"] - -20.0) <= 0.2
    assert 20 * np.log10(sami["peak"]) <= -2.0 + 0.05


def test_audo_upload_websocket_download_equal_the_cli(server, api, files, tmp_path):
    import asyncio

    import websockets

    with open(files["noisy.flac"], "rb") as f:
        r = api.post("/v1/upload?inputExt=flac", files={"file": ("noisy.flac", f)})
    assert r.status_code == 200, r.text
    file_id = r.json()["fileId"]
    r = api.post("/v1/remove-noise", content=json.dumps({"input": file_id, "noiseReductionAmount": "90",
                                                          "outputExtension": "flac"}),
                 headers={"content-type": "application/x-www-form-urlencoded"})  # what curl -d sends
    assert r.status_code == 200, r.text
    job_id = r.json()["jobId"]

    async def stream() -> list[dict]:
        url = server.url.replace("http://", "ws://") + f"/v1/wss/remove-noise/{job_id}/status"
        async with websockets.connect(url, additional_headers={"x-api-key": KEY}) as ws:
            return [json.loads(m) async for m in ws]

    messages = asyncio.run(stream())
    assert messages[-1]["state"] == "succeeded", messages
    assert all(m["state"] in ("queued", "in_progress", "succeeded") for m in messages)
    percents = [m["percent"] for m in messages if m["state"] == "in_progress"]
    assert percents == sorted(percents) and all(0 <= p <= 100 for p in percents)
    status = api.get(f"/v1/remove-noise/{job_id}/status").json()
    assert status == messages[-1]
    path = status["downloadPath"]
    assert path == f"dl/artifacts/clean/audo_enhanced_{job_id}.flac"
    r = api.get("/v1/" + path)
    assert r.status_code == 200
    (tmp_path / "service.flac").write_bytes(r.content)
    cli("denoise", str(files["noisy.flac"]), str(tmp_path / "cli.flac"), "--amount", "90")
    assert np.array_equal(decoded(tmp_path / "service.flac"), decoded(tmp_path / "cli.flac"))


def test_audo_url_input_and_presigned_put_output(api, files, s3c, tmp_path):
    r = api.post("/v1/remove-noise", json={"input": get_url(s3c, "noisy.flac"), "outputExtension": "wav",
                                           "output": put_url(s3c, "clean/noisy.wav")})
    assert r.status_code == 200, r.text
    seen = wait_state(api, f"/v1/remove-noise/{r.json()['jobId']}/status", ("succeeded", "failed"), key="state")
    assert seen[-1]["state"] == "succeeded", seen
    s3c.download_file(BUCKET, "clean/noisy.wav", str(tmp_path / "put.wav"))
    served = api.get("/v1/" + seen[-1]["downloadPath"])
    (tmp_path / "served.wav").write_bytes(served.content)
    assert np.array_equal(decoded(tmp_path / "put.wav"), decoded(tmp_path / "served.wav"))
    assert decoded(tmp_path / "put.wav").shape == decoded(files["noisy.flac"]).shape


# --- error paths -------------------------------------------------------------------------------

def test_401_in_each_documents_shape(server, files):
    import asyncio

    import websockets

    for key in (None, "wrong-key-123456"):
        with server.client(key=key) as c:
            r = c.post("/v1/media/silence", json={"media_url": "http://x/a.wav", "duration": 1})
            assert (r.status_code, r.json()) == (401, {"code": 401, "message": "Unauthorized"})
            r = c.post("/api/v1/invoke?namespace=LoudnessDetect", json={"data": "AAAA", "token": "nope"})
            assert r.status_code == 401 and r.json()["status_code"] == 40100000
            r = c.post("/v1/videos:annotate", json={"inputUri": "http://x/a", "features": ["AUDIO_FORMAT"]})
            assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"
            for method, path in (("POST", "/media/diagnose"), ("GET", "/media/diagnose?job_id=x"),
                                 ("POST", "/media/enhance"), ("GET", "/media/enhance?job_id=x")):
                r = c.request(method, path, json={})
                assert r.status_code == 401 and r.json()["status"] == 401 and r.json()["title"] == "Unauthorized"
            for method, path in (("POST", "/v1/upload"), ("POST", "/v1/remove-noise"),
                                 ("GET", "/v1/remove-noise/x/status"), ("GET", "/v1/dl/artifacts/clean/x.wav")):
                assert c.request(method, path).status_code == 401

    async def ws() -> int:
        url = server.url.replace("http://", "ws://") + "/v1/wss/remove-noise/x/status"
        try:
            async with websockets.connect(url, additional_headers={"x-api-key": "wrong-key-123456"}):
                return 101
        except websockets.exceptions.InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(ws()) == 401


@pytest.mark.parametrize("body, problem", [
    ({"duration": 1}, "media_url"),
    ({"media_url": "http://127.0.0.1/a.wav"}, "duration"),
    ({"media_url": "http://127.0.0.1/a.wav", "duration": 0.05}, "duration"),
    ({"media_url": "http://127.0.0.1/a.wav", "duration": "1"}, "duration"),
    ({"media_url": "http://127.0.0.1/a.wav", "duration": 1, "mono": "yes"}, "mono"),
    ({"media_url": "http://127.0.0.1/a.wav", "duration": 1, "colour": "red"}, "colour"),
    ({"media_url": "http://127.0.0.1/a.wav", "duration": 1, "noise": "loud"}, "noise"),
    ({"media_url": "http://127.0.0.1/a.wav", "duration": 1, "start": "1:2:3:4"}, "start"),
    ({"media_url": "ftp://127.0.0.1/a.wav", "duration": 1}, "scheme"),
])
def test_silence_400_names_the_problem(api, body, problem):
    r = api.post("/v1/media/silence", json=body)
    assert r.status_code == 400
    out = r.json()
    assert out["code"] == 400 and out["message"] == "Invalid request payload" and problem in out["detail"]


def test_other_400s(api):
    assert api.post("/v1/media/silence", content=b"{not json").status_code == 400
    cases = [
        ("/api/v1/invoke?namespace=LoudnessDetect", {"data": "not base64!"}, "base64"),
        ("/api/v1/invoke?namespace=LoudnessDetect", {}, "data"),
        ("/api/v1/invoke?namespace=Other", {"data": "AAAA"}, "namespace"),
        (
            "/api/v1/invoke?namespace=LoudnessDetect",
            {"data": "AAAA", "payload": json.dumps({"audio_info": {"format": "pcm"}})},
            "sample_rate",
        ),
        ("/v1/videos:annotate", {"inputUri": "http://127.0.0.1/a", "features": ["LABELS"]}, "AUDIO_FORMAT"),
        (
            "/v1/videos:annotate",
            {
                "inputUri": "http://127.0.0.1/a",
                "features": ["AUDIO_FORMAT"],
                "videoContext": {"audioFormatConfig": {"compressed_channels": [-1]}},
            },
            "compressed",
        ),
        ("/media/diagnose", {}, "input"),
        ("/media/enhance", {"input": "http://127.0.0.1/a.wav", "output": "http://127.0.0.1/b.xyz"}, "extension"),
        (
            "/media/enhance",
            {
                "input": "http://127.0.0.1/a.wav",
                "output": "http://127.0.0.1/b.wav",
                "audio": {"noise": {"reduction": {"amount": "extreme"}}},
            },
            "amount",
        ),
        (
            "/v1/remove-noise",
            {"input": "http://127.0.0.1/a.wav", "noiseReductionAmount": "101"},
            "noiseReductionAmount",
        ),
        ("/v1/remove-noise", {"input": "not-a-file-id"}, "fileId"),
        ("/v1/remove-noise", {"input": "http://127.0.0.1/a.wav", "outputExtension": "exe"}, "outputExtension"),
    ]
    for path, body, problem in cases:
        r = api.post(path, json=body)
        assert r.status_code == 400, (path, body, r.text)
        assert problem in r.text, (path, r.text)
    r = api.post("/v1/upload", content=b"plain")
    assert r.status_code == 400 and "multipart" in r.json()["message"]


def test_404_and_jobs_are_visible_only_to_their_key(server, api, files):
    with open(files["noisy.flac"], "rb") as f:
        file_id = api.post("/v1/upload", files={"file": ("n.flac", f)}).json()["fileId"]
    job_id = api.post("/v1/remove-noise", json={"input": file_id}).json()["jobId"]
    dolby = api.post("/media/diagnose", json={"input": "http://127.0.0.1:9/none.wav"}).json()["job_id"]
    with server.client(key=OTHER_KEY) as other:
        assert other.get(f"/v1/remove-noise/{job_id}/status").status_code == 404
        assert other.post("/v1/remove-noise", json={"input": file_id}).status_code == 404
        r = other.get(f"/media/diagnose?job_id={dolby}")
        assert r.status_code == 404 and r.json()["title"] == "Not Found"
    assert api.get("/v1/remove-noise/00000000-0000-0000-0000-000000000000/status").status_code == 404
    assert api.get("/media/enhance?job_id=" + dolby).status_code == 404  # a diagnose job is no enhance job
    assert api.get("/v1/media/silence/nope").status_code == 404
    done = wait_state(api, f"/v1/remove-noise/{job_id}/status", ("succeeded", "failed"), key="state")[-1]
    with server.client(key=OTHER_KEY) as other:
        assert other.get("/v1/" + done["downloadPath"]).status_code == 404
    for path in ("/v1/dl/../../jobs.sqlite3", "/v1/dl/%2e%2e/%2e%2e/jobs.sqlite3",
                 "/v1/dl/artifacts/clean/audo_enhanced_..%2f..%2fjobs.sqlite3.wav", "/v1/dl/artifacts/clean/x"):
        r = api.get(path)
        assert r.status_code == 404 and b"SQLite" not in r.content


def test_413_for_uploads_downloads_and_data(api, s3c):
    r = api.post("/v1/upload", files={"file": ("big.wav", b"\0" * (5 << 20))})
    assert r.status_code == 413, r.text
    r = api.post("/v1/media/silence", json={"media_url": get_url(s3c, "big.wav"), "duration": 1})
    assert r.status_code == 413 and r.json()["code"] == 413, r.text
    r = api.post("/api/v1/invoke?namespace=LoudnessDetect", json={"data": base64.b64encode(b"\0" * (5 << 20)).decode()})
    assert r.status_code == 413 and r.json()["status_code"] == 41300000


def test_failed_job_reason_names_no_server_path(server, api):
    with_bad = api.post("/v1/upload?inputExt=wav", files={"file": ("bad.wav", b"RIFF not really a wav file")})
    job_id = api.post("/v1/remove-noise", json={"input": with_bad.json()["fileId"]}).json()["jobId"]
    final = wait_state(api, f"/v1/remove-noise/{job_id}/status", ("succeeded", "failed"), key="state")[-1]
    assert final["state"] == "failed"
    assert str(server.data_dir) not in final["reason"] and "Traceback" not in final["reason"]
    assert "not a readable media file" in final["reason"]


def test_429_when_the_queue_is_full(api, files, recorder):
    recorder.files["/slow.wav"] = files["gaps.wav"].read_bytes()
    recorder.gated.add("/slow.wav")
    ids = []
    for _ in range(8):  # MAX_QUEUE_LENGTH 8: downloads that hang keep 8 jobs unfinished
        r = api.post("/media/diagnose", json={"input": recorder.url + "/slow.wav"})
        assert r.status_code == 200, r.text
        ids.append(r.json()["job_id"])
    r = api.post("/media/diagnose", json={"input": recorder.url + "/slow.wav"})
    assert r.status_code == 429 and r.json()["status"] == 429
    r = api.post("/v1/media/silence", json={"media_url": recorder.url + "/slow.wav", "duration": 1})
    assert r.status_code == 429 and r.json()["code"] == 429
    r = api.post("/api/v1/invoke?namespace=LoudnessDetect", json={"data": "AAAA"})
    assert r.status_code == 429 and r.json()["status_code"] == 42900000
    assert {api.get(f"/media/diagnose?job_id={i}").json()["status"] for i in ids} == {"Pending"}
    recorder.gate.set()
    for i in ids:
        assert wait_state(api, f"/media/diagnose?job_id={i}", ("Success", "Failed"))[-1]["status"] == "Success"


def test_load_200_silence_requests_from_16_clients(server, files, s3c):
    url = get_url(s3c, "gaps.wav")
    want = cli("silence", str(files["gaps.wav"]), "--duration", "0.5")

    def one(i: int) -> tuple[int, dict]:
        with server.client() as c:
            r = c.post("/v1/media/silence", json={"media_url": url, "duration": 0.5, "id": f"load-{i}"})
            return r.status_code, r.json()

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(200)))
    assert len(results) == 200
    ok = [b for s, b in results if s == 200]
    refused = [b for s, b in results if s == 429]
    assert len(ok) + len(refused) == 200, {s for s, _ in results}
    assert all(b["response"] == want and b["code"] == 200 for b in ok)
    assert len({b["job_id"] for b in ok}) == len(ok) and {b["id"] for b in ok} <= {f"load-{i}" for i in range(200)}
    assert all(b == {"code": 429, "message": b["message"]} for b in refused)
    assert ok  # with 16 clients and 8 queue places, most get through


def test_killed_server_loses_no_job(tmp_path, files, recorder):
    recorder.files["/in.wav"] = files["gaps.wav"].read_bytes()
    recorder.gated.add("/in.wav")
    srv = Server(tmp_path / "data", "--allow-private-urls", "--workers", "1").start()
    try:
        with srv.client() as api:
            pending = [api.post("/media/diagnose", json={"input": recorder.url + "/in.wav"}).json()["job_id"]
                       for _ in range(2)]
            with open(files["noisy.flac"], "rb") as f:
                file_id = api.post("/v1/upload", files={"file": ("n.flac", f)}).json()["fileId"]
            audo = [api.post("/v1/remove-noise", json={"input": file_id}).json()["jobId"] for _ in range(4)]
            states = [api.get(f"/v1/remove-noise/{j}/status").json()["state"] for j in audo]
            assert "queued" in states, states  # one worker: the later ones wait behind the first
        srv.kill()
    except BaseException:
        srv.stop()
        raise
    recorder.gate.set()
    srv = Server(tmp_path / "data", "--allow-private-urls", "--workers", "1").start()  # jobs live in the data dir
    try:
        with srv.client() as api:
            for j in pending:
                final = wait_state(api, f"/media/diagnose?job_id={j}", ("Success", "Failed"))[-1]
                assert final["status"] == "Success" and final["result"]["silence"] is not None
            for j in audo:
                final = wait_state(api, f"/v1/remove-noise/{j}/status", ("succeeded", "failed"), key="state")[-1]
                assert final["state"] == "succeeded", final
                assert api.get("/v1/" + final["downloadPath"]).status_code == 200
        assert '"event": "recovered"' in srv.log_text()
    finally:
        srv.stop()
