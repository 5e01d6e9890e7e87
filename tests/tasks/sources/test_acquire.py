"""Acquire: download with checksum and cache against a local HTTP server; safe zip extraction."""

from __future__ import annotations

import hashlib
import http.server
import io
import stat
import threading
import zipfile

import pytest

from tasks.sources import acquire
from tasks.core.errors import InputError, SourceUnavailable

from tests.tasks.sources.test_movielens import GOOD


def ml_zip() -> bytes:
    """A small zip laid out like ml-100k.zip (files inside an ml-100k/ folder)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, text in GOOD.items():
            zf.writestr(f"ml-100k/{name}", text.encode("latin-1"))
    return buf.getvalue()


class Server:
    """A local HTTP server on a free port serving `body` at /ml-100k.zip; counts requests."""

    def __init__(self, body: bytes):
        self.body, self.requests = body, 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/ml-100k.zip"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server(ml_zip())
    yield s
    s.close()


def test_download_verifies_caches_and_reuses(home, server):
    sha1 = hashlib.sha1(server.body).hexdigest()
    folder = acquire.resolve_source(None, home, url=server.url, sha1=sha1, size=None, progress=False)
    assert (folder / "u.data").read_bytes() == GOOD["u.data"].encode()
    assert (home.raw / "ml-100k.zip").read_bytes() == server.body
    assert server.requests == 1
    again = acquire.resolve_source(None, home, url=server.url, sha1=sha1, size=None, progress=False)
    assert again == folder and server.requests == 1          # cache used, checksum re-verified


def test_corrupted_download_is_rejected_and_not_cached(home, server):
    good_sha1 = hashlib.sha1(server.body).hexdigest()
    server.body = server.body[:-10] + b"0123456789"           # same size, wrong bytes
    with pytest.raises(acquire.ChecksumMismatch) as e:
        acquire.resolve_source(None, home, url=server.url, sha1=good_sha1, progress=False)
    assert e.value.rule == "sha1" and "not cached" in str(e.value)
    assert not (home.raw / "ml-100k.zip").exists()
    assert [p.name for p in home.raw.iterdir()] == []          # no partial file left behind


def test_damaged_cache_is_fetched_again(home, server):
    sha1 = hashlib.sha1(server.body).hexdigest()
    home.raw.mkdir(parents=True)
    (home.raw / "ml-100k.zip").write_bytes(b"garbage")
    acquire.resolve_source(None, home, url=server.url, sha1=sha1, progress=False)
    assert server.requests == 1 and acquire.sha1_of(home.raw / "ml-100k.zip") == sha1


def test_size_checks(home, server):
    sha1 = hashlib.sha1(server.body).hexdigest()
    with pytest.raises(InputError, match="size") as e:
        acquire.download(server.url, home.raw / "x.zip", sha1=sha1, size=len(server.body) + 1, progress=False)
    assert e.value.rule == "size"
    with pytest.raises(InputError) as e:
        acquire.download(server.url, home.raw / "x.zip", sha1=sha1, max_bytes=100, progress=False)
    assert e.value.rule == "size-ceiling"
    assert not (home.raw / "x.zip").exists()


def test_no_network_no_copy_says_how_to_point_at_a_copy(home, monkeypatch):
    monkeypatch.delenv(acquire.SOURCE_ENV, raising=False)
    with pytest.raises(SourceUnavailable) as e:
        # port 9 on 127.0.0.1: connection refused, like a machine without network
        acquire.resolve_source(None, home, url="http://127.0.0.1:9/ml-100k.zip", progress=False,
                               retries=1, backoff=0.01)
    msg = str(e.value)
    assert "--source /path/to/ml-100k" in msg and "LENSFLOW_SOURCE=" in msg
    with pytest.raises(SourceUnavailable, match="does not exist"):
        acquire.resolve_source(str(home.home / "nowhere"), home)


def test_local_zip_folder_and_env(home, tmp_path, monkeypatch):
    z = tmp_path / "copy.zip"
    z.write_bytes(ml_zip())
    folder = acquire.resolve_source(str(z), home)
    assert folder.name == "ml-100k" and (folder / "u.item").is_file()
    assert home.raw in folder.parents
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "u.data").write_text(GOOD["u.data"])
    assert acquire.resolve_source(str(plain), home) == plain
    monkeypatch.setenv(acquire.SOURCE_ENV, str(plain))
    assert acquire.resolve_source(None, home) == plain


def zip_with(name: str, data: bytes = b"x", *, symlink: bool = False, declared: int | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-100k/u.genre", b"ok")
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, data)
    raw = buf.getvalue()
    if declared is not None:   # lie about the size in both headers, as a zip bomb would
        real = len(data).to_bytes(4, "little")
        raw = raw.replace(real, declared.to_bytes(4, "little"))
    return raw


@pytest.mark.parametrize("name, kw, rule", [
    ("../evil.txt", {}, "zip-path-traversal"),
    ("ml-100k/../../evil.txt", {}, "zip-path-traversal"),
    ("/etc/evil.txt", {}, "zip-absolute-path"),
    ("ml-100k/link", {"symlink": True, "data": b"/etc/passwd"}, "zip-symlink"),
])
def test_unsafe_members_refused(tmp_path, name, kw, rule):
    z = tmp_path / "bad.zip"
    z.write_bytes(zip_with(name, **kw))
    target = tmp_path / "out"
    with pytest.raises(InputError) as e:
        acquire.safe_extract(z, target)
    assert (e.value.rule, e.value.field, e.value.file) == (rule, name, "bad.zip")
    assert not target.exists() and not (tmp_path / "evil.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.zip"]


def test_oversize_members_refused(tmp_path):
    z = tmp_path / "big.zip"
    z.write_bytes(zip_with("ml-100k/u.data", b"0" * 5000))
    with pytest.raises(InputError) as e:                      # declared size over the ceiling
        acquire.safe_extract(z, tmp_path / "out", max_member_bytes=1000)
    assert e.value.rule == "zip-member-size" and e.value.field == "ml-100k/u.data"
    with pytest.raises(InputError) as e:                      # total over the ceiling
        acquire.safe_extract(z, tmp_path / "out", max_total_bytes=1000)
    assert e.value.rule == "zip-total-size"
    assert not (tmp_path / "out").exists()


def test_member_inflating_past_declared_size_refused(tmp_path):
    z = tmp_path / "bomb.zip"
    data = b"A" * 70_001
    z.write_bytes(zip_with("ml-100k/u.data", data, declared=100))
    with pytest.raises(InputError) as e:
        acquire.safe_extract(z, tmp_path / "out")
    # zipfile stops at the declared size, so the stream fails its CRC instead of filling the disk
    assert e.value.rule == "zip-format" and "CRC" in e.value.detail
    assert not (tmp_path / "out").exists()


def test_a_host_that_does_not_resolve_fails_at_once(tmp_path):
    """No DNS answer (offline, a typo in the host): one attempt, no back-off, the hint says what to do."""
    from tasks.sources.acquire import DownloadFailed, download

    with pytest.raises(DownloadFailed, match=r"after 1 attempt\(s\).*--source") as e:
        download("http://lensflow-test.invalid/ml-100k.zip", tmp_path / "ml-100k.zip", sha1="0" * 40,
                 retries=2, backoff=30.0, progress=False)   # a retry would sleep 30 s first
    assert not (tmp_path / "ml-100k.zip").exists() and list(tmp_path.iterdir()) == []
    assert "lensflow-test.invalid" in str(e.value)
