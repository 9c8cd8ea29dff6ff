"""The service's network guard (SSRF): a server without ``--allow-private-urls`` refuses every
URL that leads into the server's own network, and the guard checks every redirect hop and
connects to the address it checked. Nothing here sends traffic beyond 127.0.0.0/8."""

from __future__ import annotations

import asyncio

import pytest

from audioqc.service.netguard import FetchError, NetGuard
from service_support import Recorder, Server


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("strict") / "data", "--workers", "1").start()
    yield srv
    srv.stop()


@pytest.fixture()
def recorder():
    r = Recorder()
    r.files["/a.wav"] = b"RIFF"
    yield r
    r.close()


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/a.wav", "http://localhost:{port}/a.wav", "http://[::1]:{port}/a.wav",
    "http://127.0.0.2:{port}/a.wav", "http://[::ffff:127.0.0.1]:{port}/a.wav", "http://0.0.0.0:{port}/a.wav",
    "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/a.wav", "http://192.168.1.1/a.wav",
    "http://172.16.0.1/a.wav", "http://100.64.0.1/a.wav", "http://[fd00:ec2::254]/latest/meta-data/",
])
def test_private_and_loopback_inputs_are_refused(strict, recorder, url):
    url = url.format(port=recorder.server_address[1])
    with strict.client() as api:
        r = api.post("/v1/media/silence", json={"media_url": url, "duration": 1})
        assert r.status_code == 400 and "non-public" in r.json()["detail"], r.text
        r = api.post("/media/diagnose", json={"input": url})
        assert r.status_code == 400 and "non-public" in r.json()["detail"]
        r = api.post("/v1/remove-noise", json={"input": url})
        assert r.status_code == 400
    assert recorder.requests == []  # nothing reached the address


def test_webhooks_outputs_and_other_schemes_are_refused(strict, recorder):
    public = "http://93.184.215.14/a.wav"  # never contacted: every request below is refused first
    with strict.client() as api:
        r = api.post("/v1/media/silence", json={"media_url": "http://127.0.0.1/a.wav", "duration": 1,
                                                "webhook_url": recorder.url + "/hook"})
        assert r.status_code == 400
        r = api.post("/media/enhance", json={"input": "file:///etc/passwd", "output": recorder.url + "/o.wav"})
        assert r.status_code == 400 and "scheme" in r.json()["detail"]
        for url in ("file:///etc/passwd", "s3://bucket/key.wav", "gopher://127.0.0.1/", "/etc/passwd",
                    "http://user:pw@127.0.0.1/a.wav"):
            r = api.post("/v1/videos:annotate", json={"inputUri": url, "features": ["AUDIO_FORMAT"]})
            assert r.status_code == 400, url
        r = api.post("/media/enhance", json={"input": public, "output": recorder.url + "/o.wav"})
        assert r.status_code == 400 and "output" in r.json()["detail"]
    assert recorder.requests == []


def _run(coro):
    return asyncio.run(coro)


def test_addresses_judged_as_documented():
    guard = NetGuard(allow_private=False, max_bytes=1 << 20, timeout_s=5)
    refused = ["127.0.0.1", "127.9.9.9", "::1", "10.1.2.3", "172.31.0.1", "192.168.0.1", "169.254.169.254",
               "100.64.0.1", "0.0.0.0", "::", "224.0.0.1", "fe80::1", "fd00:ec2::254", "::ffff:10.0.0.1",
               "240.0.0.1", "not-an-ip"]
    allowed = ["93.184.215.14", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"]
    assert [a for a in refused if guard.ip_allowed(a)] == []
    assert [a for a in allowed if not guard.ip_allowed(a)] == []
    loose = NetGuard(allow_private=True, max_bytes=1 << 20, timeout_s=5)
    assert loose.ip_allowed("127.0.0.1") and loose.ip_allowed("10.1.2.3") and not loose.ip_allowed("0.0.0.0")
    one = NetGuard(allow_private=False, allowed_networks=("127.0.0.1/32",), max_bytes=1 << 20, timeout_s=5)
    assert one.ip_allowed("127.0.0.1") and not one.ip_allowed("127.0.0.2")


def test_a_redirect_to_a_private_address_is_refused(tmp_path):
    first, second = Recorder("127.0.0.1"), Recorder("127.0.0.2")
    try:
        second.files["/secret"] = b"internal"
        first.redirects["/r"] = second.url + "/secret"
        first.redirects["/ok"] = "/a.wav"
        first.files["/a.wav"] = b"media bytes"
        guard = NetGuard(allow_private=False, allowed_networks=("127.0.0.1/32",), max_bytes=1 << 20, timeout_s=10)
        with pytest.raises(FetchError) as err:
            _run(guard.download(first.url + "/r", str(tmp_path / "x")))
        assert err.value.status == 400 and "127.0.0.2" in err.value.message
        assert second.requests == [] and not (tmp_path / "x").exists()
        assert _run(guard.download(first.url + "/ok", str(tmp_path / "y"))) == len(b"media bytes")  # allowed hops
        assert (tmp_path / "y").read_bytes() == b"media bytes"
    finally:
        first.close()
        second.close()


def test_names_are_pinned_to_the_checked_address_and_every_address_is_checked(tmp_path):
    hosts = tmp_path / "hosts"
    rec = Recorder("127.0.0.1")
    try:
        rec.files["/a.wav"] = b"abc"
        hosts.write_text("127.0.0.1 media.test\n127.0.0.1 mixed.test\n10.0.0.1 mixed.test\n")
        guard = NetGuard(allow_private=False, allowed_networks=("127.0.0.1/32",), max_bytes=1 << 20, timeout_s=10,
                         hosts_only=True, hosts_file=str(hosts))
        port = rec.server_address[1]
        assert _run(guard.download(f"http://media.test:{port}/a.wav", str(tmp_path / "a"))) == 3
        with pytest.raises(FetchError) as err:  # one address of the name is private: refused
            _run(guard.download(f"http://mixed.test:{port}/a.wav", str(tmp_path / "b")))
        assert "10.0.0.1" in err.value.message
        with pytest.raises(FetchError):
            _run(guard.download(f"http://unknown.test:{port}/a.wav", str(tmp_path / "c")))
        assert rec.requests == [("GET", "/a.wav")]
    finally:
        rec.close()


def test_size_and_time_limits(tmp_path):
    rec = Recorder("127.0.0.1")
    try:
        rec.files["/big"] = b"x" * 5000
        rec.files["/slow"] = b"x"
        rec.gated.add("/slow")
        guard = NetGuard(allow_private=True, max_bytes=4096, timeout_s=0.5)
        with pytest.raises(FetchError) as err:
            _run(guard.download(rec.url + "/big", str(tmp_path / "big")))
        assert err.value.status == 413 and not (tmp_path / "big").exists()
        with pytest.raises(FetchError) as err:
            _run(guard.download(rec.url + "/slow", str(tmp_path / "slow")))
        assert err.value.status == 504 and not (tmp_path / "slow").exists()
    finally:
        rec.close()
