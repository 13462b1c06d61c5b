"""The Windows deployment (Waitress, python/start_windows_production.py, no proxy in front) under the slow
and idle clients tests/test_proxy.py throws at nginx: /health/ready keeps answering and a photo is served.
Run on Linux here (Waitress is pure Python: the same event loop as on Windows)."""

from __future__ import annotations

import requests
from devtools.attacks import probe_ready, standard_attacks
from devtools.servers import Server
from devtools.shared import sample

KEY = "school-key"


def test_slow_and_idle_clients_do_not_starve_waitress(database_url, tmp_path):
    server = Server("waitress", database_url, tmp_path, API_KEYS=KEY).wait_ready(120)  # production defaults
    attacks = standard_attacks(server.port)
    try:
        probes, failures, slowest = probe_ready(server.url)
        r = requests.post(server.url + "/api/v1/recognize", files={"image": ("o.jpg", sample("obama.jpg"))},
                          headers={"X-API-Key": KEY}, timeout=60)
        assert r.status_code == 200 and len(r.json()["faces"]) == 1
        open_now = [a.connected - a.dropped for a in attacks]
    finally:
        for attack in attacks:
            attack.end()
        assert server.stop() == 0
    print(f"waitress under attack: {probes} probes, failures {failures}, slowest {slowest:.2f} s, open {open_now}")
    assert failures == [] and probes >= 40, (failures, probes)
    assert slowest < 2.0, slowest
    assert open_now[0] >= 80 and open_now[1] >= 200, open_now  # the attack was really on while we probed
