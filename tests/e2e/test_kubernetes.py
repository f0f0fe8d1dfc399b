"""The seed's Kubernetes Ingress example (configs/k8s/route-plugin.yaml) in a
real mitmdump, with only the URLs and the secret changed: the Ingress host and
path are protected, and the ConfigMap sends the Service to the local echo."""

from __future__ import annotations

from pathlib import Path

import httpx

from .harness import CLIENT_AUTH, ROOT, Mitmdump, echoed, free_port


def test_seed_ingress_example_protects_its_host_and_path(echo, idp, make_token,
                                                         tmp_path: Path):
    text = (ROOT / "configs" / "k8s" / "route-plugin.yaml").read_text()
    text = (text.replace("https://example-url.com", idp.url)
            .replace("Basic MG9hNWlpbjpPcGVuU2VzYW1l", CLIENT_AUTH)
            .replace("http://127.0.0.1:9000", f"http://127.0.0.1:{echo.port}"))
    manifest = tmp_path / "route-plugin.yaml"
    manifest.write_text(text)
    # the reverse-mode target is closed: only the ConfigMap's URL reaches the echo
    m = Mitmdump(manifest, free_port()).start()
    try:
        with httpx.Client(base_url=m.url, trust_env=False, timeout=15) as c:
            host = {"Host": "examplehostname.com"}
            assert c.get("/bar", headers=host).status_code == 401
            token = make_token(username="alice")
            ok = echoed(c.get("/bar/x", headers={**host, "Authorization": f"Bearer {token}"}))
            assert ok["path"] == "/bar/x"  # Ingress routes keep the path (strip_path false)
            assert ok["h"]["x-credential-identifier"] == "alice"
            assert ok["h"]["host"] == "examplehostname.com"  # preserve_host, as the KIC does
            assert c.get("/bar", headers={"Host": "other.test"}).status_code == 502
    finally:
        m.stop()
