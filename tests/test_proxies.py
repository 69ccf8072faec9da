"""Proxies named by address: X-Forwarded-For is believed only on a request that comes from one of them,
walked from the right past every trusted hop; whoever reaches the app directly is their own address,
whatever headers they write, for the rate limits, /metrics and HTTPS alike."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PROXY = "10.0.0.2"
INNER_PROXY = "10.0.0.9"
MONITORING = "192.0.2.5"


@pytest.fixture
def proxied(settings, tmp_path):
    """A deployment behind proxies in 10.0.0.0/8, with its settings as config.settings makes them."""
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.USE_X_FORWARDED_HOST = True
    settings.METRICS_DIR = tmp_path
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = [MONITORING]
    return settings


@pytest.mark.parametrize(("remote", "forwarded", "expected"), [
    (PROXY, "198.51.100.7", "198.51.100.7"),
    # The client wrote the left one; our proxy the right.
    (PROXY, "6.6.6.6, 198.51.100.7", "198.51.100.7"),
    # Two proxies: the inner one's hop is skipped.
    (PROXY, f"6.6.6.6, 198.51.100.7, {INNER_PROXY}", "198.51.100.7"),
    # A client in the trusted network's own address space is still a client at the left end.
    (PROXY, f"{INNER_PROXY}", INNER_PROXY),
    (PROXY, "", PROXY),
    # With the port some proxies add (Azure's Application Gateway), IPv4 and bracketed IPv6 alike.
    (PROXY, "203.0.113.7:51234", "203.0.113.7"),
    (PROXY, f"6.6.6.6, 203.0.113.7:51234, {INNER_PROXY}:443", "203.0.113.7"),
    (PROXY, "[2001:db8::1]:443", "2001:db8::1"),
    (PROXY, "[2001:db8::1]", "2001:db8::1"),
    (f"::ffff:{PROXY}", "198.51.100.7", "198.51.100.7"),
    # Not from a proxy: the header proves nothing.
    ("198.51.100.7", "6.6.6.6", "198.51.100.7"),
    ("198.51.100.7", f"6.6.6.6, {PROXY}", "198.51.100.7"),
])
def test_the_client_is_the_first_address_from_the_right_that_is_not_a_trusted_proxy(rf, proxied, remote,
                                                                                   forwarded, expected):
    from config.proxy import client_ip

    request = rf.post("/alerts/new/", HTTP_X_FORWARDED_FOR=forwarded, REMOTE_ADDR=remote)

    assert client_ip(request) == expected


@pytest.mark.parametrize("hop", ["unknown", "unix:", "_hidden", "203.0.113.7:port", "[2001:db8::1]x"])
def test_a_hop_naming_no_address_is_a_client_of_its_own_never_the_proxy_nor_whoever_wrote_the_left(rf, proxied,
                                                                                                    hop):
    from config.proxy import client_ip

    def client(forwarded: str) -> str:
        return client_ip(rf.post("/alerts/new/", HTTP_X_FORWARDED_FOR=forwarded, REMOTE_ADDR=PROXY))

    seen = client(hop)

    assert seen not in (PROXY, INNER_PROXY, "0.0.0.0")
    # The same whatever the client wrote to its left, or the inner proxies to its right.
    assert client(f"6.6.6.6, {hop}") == client(f"7.7.7.7, {hop}, {INNER_PROXY}") == seen
    assert client("another-unnamed-client") != seen


def test_with_no_proxy_named_no_header_is_believed(rf, settings):
    from config.proxy import client_ip

    settings.TRUSTED_PROXIES = []

    assert client_ip(rf.get("/", HTTP_X_FORWARDED_FOR="198.51.100.7", REMOTE_ADDR=PROXY)) == PROXY


def sign_up(client, n: int, remote: str, forwarded: str):
    return client.post("/alerts/new/", {"email": f"p{n}@example.org", "q": "palantir", "frequency": "daily",
                                        "alert_on": "both", "label": "", "website": ""},
                       REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded).status_code


@pytest.mark.django_db
def test_behind_the_proxy_each_client_has_its_own_limit_and_a_spoofed_header_escapes_nothing(client, proxied,
                                                                                             limiter_clock):
    proxied.RATELIMIT_SIGNUP_PER_IP = "3/h"
    first = [sign_up(client, n, PROXY, f"6.6.6.{n}, 198.51.100.7") for n in range(4)]
    second = [sign_up(client, 10 + n, PROXY, "198.51.100.8") for n in range(4)]
    direct = [sign_up(client, 20 + n, "203.0.113.9", f"6.6.6.{n}") for n in range(4)]

    assert first == second == direct == [302, 302, 302, 429]


@pytest.mark.django_db
@pytest.mark.parametrize("forwarded", [["203.0.113.7:51234", "203.0.113.8:51234"],
                                       ["[2001:db8:1::1]:443", "[2001:db8:2::1]:443"],
                                       ["unknown", "unix:"]], ids=["ipv4-port", "ipv6-port", "no-address"])
def test_behind_a_proxy_that_writes_ports_or_names_each_client_keeps_its_own_limit(client, proxied, limiter_clock,
                                                                                 forwarded):
    proxied.RATELIMIT_SIGNUP_PER_IP = "3/h"
    first = [sign_up(client, n, PROXY, forwarded[0]) for n in range(4)]
    second = [sign_up(client, 10 + n, PROXY, forwarded[1]) for n in range(4)]

    assert first == second == [302, 302, 302, 429]


@pytest.mark.django_db
def test_the_metrics_allow_list_believes_only_the_proxy(client, proxied):
    def metrics(remote: str, forwarded: str) -> int:
        return client.get("/metrics", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded).status_code

    assert metrics(PROXY, MONITORING) == 200
    assert metrics(PROXY, f"{MONITORING}, {INNER_PROXY}") == 200
    # Straight to the app, or through the proxy with the allowed address written on the left by the client.
    assert metrics("203.0.113.9", MONITORING) == 404
    assert metrics(PROXY, f"{MONITORING}, 203.0.113.9") == 404


@pytest.mark.django_db
def test_only_the_proxy_can_say_a_request_came_over_https(client, proxied):
    proxied.SECURE_SSL_REDIRECT = True

    through_proxy = client.get("/help/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_PROTO="https")
    direct = client.get("/help/", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_PROTO="https",
                        HTTP_X_FORWARDED_HOST="evil.example")

    assert through_proxy.status_code == 200
    assert direct.status_code == 301 and direct["Location"] == "https://testserver/help/"


def manage_py_check(tmp_path, **variables) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "REDIS", "TRUSTED", "PROMETHEUS"))}
    return subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=env | {"VAR_DIR": str(tmp_path)} | variables)


def test_the_old_count_of_proxies_stops_the_site_naming_the_setting_that_replaced_it(tmp_path):
    old = manage_py_check(tmp_path, TRUSTED_PROXY="1")
    bad = manage_py_check(tmp_path, TRUSTED_PROXIES="10.0.0.0/8,proxy.internal")
    named = manage_py_check(tmp_path, TRUSTED_PROXIES="10.0.0.0/8,127.0.0.1")

    assert old.returncode != 0
    assert "proxy.E001" in old.stderr and "TRUSTED_PROXIES" in old.stderr
    assert bad.returncode != 0 and "proxy.E002" in bad.stderr and "proxy.internal" in bad.stderr
    assert named.returncode == 0, named.stderr


def compose_config(tmp_path) -> str:
    """What `docker compose config` makes of docker-compose.yml with .env.example as the .env, from whichever of
    the standalone command or the plugin is installed."""
    (tmp_path / "docker-compose.yml").write_text((ROOT / "docker-compose.yml").read_text())
    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())
    if shutil.which("docker-compose"):
        command = ["docker-compose", "config"]
    elif shutil.which("docker") and not subprocess.run(["docker", "compose", "version"],
                                                        capture_output=True).returncode:
        command = ["docker", "compose", "config"]
    else:
        pytest.skip("neither docker-compose nor the docker compose plugin is installed")
    compose = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert compose.returncode == 0, compose.stderr
    return compose.stdout


def test_compose_publishes_the_app_on_loopback_only(tmp_path):
    lines = [line.strip() for line in compose_config(tmp_path).splitlines()]
    short = [line for line in lines if ":8000:" in line]
    # The plugin writes each port out long: one host_ip for every port published.
    long = [line for line in lines if line.startswith(("host_ip:", "published:"))]

    assert short == ["- 127.0.0.1:8000:8000/tcp"] or (not short and long in (
        ["host_ip: 127.0.0.1", 'published: "8000"'], ['published: "8000"', "host_ip: 127.0.0.1"]))


def test_the_proxy_address_the_docs_suggest_is_the_gateway_compose_pins(tmp_path):
    config = compose_config(tmp_path)
    suggested = re.search(r"^# TRUSTED_PROXIES=(\S+)$", (ROOT / ".env.example").read_text(), re.M).group(1)

    assert re.search(r"gateway: (\S+)", config).group(1) == suggested
    assert re.search(r"subnet: (\S+)", config).group(1) == "172.30.0.0/24"
    assert f"TRUSTED_PROXIES={suggested}" in (ROOT / "README.md").read_text()
