"""The destination rules: every internal address form refused, public ones and exemptions pass."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from careloop.integrations.egress import AllowList, DestinationPolicy, DestinationRefused
from careloop.integrations.egress.destinations import IPAddress, address_kind, literal_address

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"


def resolver_of(answers: dict[str, list[str]]) -> DestinationPolicy:
    """A production policy whose DNS answers are ``answers`` (the seam for the OS resolver)."""

    def resolve(host: str, port: int) -> Sequence[IPAddress]:
        if host not in answers:
            raise DestinationRefused("unresolvable", f"{host} could not be resolved")
        return [ipaddress.ip_address(a) for a in answers[host]]

    return DestinationPolicy.create(production=True, resolver=resolve)


PRODUCTION = DestinationPolicy.create(production=True)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://127.0.0.1/hook", "loopback"),
        ("https://127.8.9.10/hook", "loopback"),
        ("https://[::1]/hook", "loopback"),
        ("https://localhost/hook", "loopback"),
        ("https://api.localhost/hook", "loopback"),
        ("https://0.0.0.0/hook", "unspecified"),
        ("https://[::]/hook", "unspecified"),
        ("https://10.1.2.3/hook", "private"),
        ("https://172.16.0.1/hook", "private"),
        ("https://172.31.255.254/hook", "private"),
        ("https://192.168.1.1/hook", "private"),
        ("https://[fd12:3456::1]/hook", "private"),
        ("https://[fc00::1]/hook", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://[fe80::1]/hook", "link-local"),
        ("https://[fe80::1%25eth0]/hook", "link-local"),
        ("https://100.64.0.1/hook", "shared"),
        ("https://100.127.255.254/hook", "shared"),
        ("https://224.0.0.251/hook", "multicast"),
        ("https://[ff02::1]/hook", "multicast"),
        ("https://255.255.255.255/hook", "reserved"),
        ("https://192.0.2.10/hook", "reserved"),  # TEST-NET-1, documentation only
        ("https://[::ffff:127.0.0.1]/hook", "loopback"),
        ("https://[::ffff:a9fe:a9fe]/hook", "link-local"),  # ::ffff:169.254.169.254
        ("https://[::ffff:10.0.0.1]/hook", "private"),
        ("https://[2002:a00:1::1]/hook", "private"),  # 6to4 around 10.0.0.1
        ("https://[64:ff9b::7f00:1]/hook", "loopback"),  # NAT64 around 127.0.0.1
        ("https://[::127.0.0.1]/hook", "loopback"),  # IPv4-compatible
        ("https://2130706433/hook", "loopback"),  # 127.0.0.1 as one decimal number
        ("https://0x7f000001/hook", "loopback"),  # hex
        ("https://0x7f.1/hook", "loopback"),
        ("https://127.1/hook", "loopback"),  # short form
        ("https://017700000001/hook", "loopback"),  # octal
        ("https://2852039166/hook", "link-local"),  # 169.254.169.254
        ("https://metadata.google.internal/computeMetadata/v1/", "metadata"),
        ("https://METADATA.GOOGLE.INTERNAL./computeMetadata/v1/", "metadata"),
        ("https://metadata/hook", "metadata"),
        ("https://db.internal/hook", "internal-name"),
        ("https://printer.local/hook", "internal-name"),
        ("https://intranet/hook", "internal-name"),
    ],
)
def test_internal_destinations_are_refused_in_production(url: str, reason: str) -> None:
    with pytest.raises(DestinationRefused) as refused:
        PRODUCTION.check_url(url)
    assert refused.value.reason == reason


@pytest.mark.parametrize("url", ["http://93.184.215.14/hook", "ftp://93.184.215.14/", "hook"])
def test_production_needs_an_absolute_https_url(url: str) -> None:
    with pytest.raises(DestinationRefused) as refused:
        PRODUCTION.check_url(url)
    assert refused.value.reason in ("https-required", "invalid-url")


def test_public_literals_pass() -> None:
    assert PRODUCTION.check_url(f"https://{PUBLIC_V4}/hook").addresses == (
        ipaddress.ip_address(PUBLIC_V4),
    )
    assert PRODUCTION.check_url(f"https://[{PUBLIC_V6}]:8443/hook").port == 8443


def test_every_resolved_address_is_checked() -> None:
    policy = resolver_of(
        {
            "hooks.example.org": [PUBLIC_V4, PUBLIC_V6],
            "mixed.example.org": [PUBLIC_V4, "10.0.0.7"],
            "v6only.example.org": ["::1"],
            "rebinder.example.org": ["169.254.169.254"],
        }
    )
    assert len(policy.check_url("https://hooks.example.org/a").addresses) == 2
    for host, reason in [
        ("mixed.example.org", "private"),
        ("v6only.example.org", "loopback"),
        ("rebinder.example.org", "link-local"),
        ("nowhere.example.org", "unresolvable"),
    ]:
        with pytest.raises(DestinationRefused) as refused:
            policy.check_url(f"https://{host}/a")
        assert refused.value.reason == reason
    assert DestinationRefused("unresolvable", "").transient
    assert not DestinationRefused("private", "").transient


def test_allow_list_hosts_suffixes_and_cidrs() -> None:
    def resolve(host: str, port: int) -> Sequence[IPAddress]:
        return [ipaddress.ip_address("10.20.0.5")]

    policy = DestinationPolicy.create(
        production=True,
        allow="ehr.hospital.example, .corp.example, 192.168.50.0/24, 10.30.0.9, fd00:1::/32",
        resolver=resolve,
    )
    assert policy.check_url("https://ehr.hospital.example/fhir").host == "ehr.hospital.example"
    assert policy.check_url("https://fhir.corp.example/R4").addresses == ()  # not resolved
    # when connecting, an allow-listed name may resolve to an internal address
    assert policy.addresses_for("fhir.corp.example", 443) == (ipaddress.ip_address("10.20.0.5"),)
    assert policy.check_url("https://192.168.50.7/hook").host == "192.168.50.7"
    assert policy.check_url("https://10.30.0.9/hook")
    assert policy.check_url("https://[fd00:1::5]/hook")
    for url in [
        "https://other.hospital.example/fhir",  # resolves to 10.20.0.5, not allow-listed
        "https://192.168.51.7/hook",
        "https://10.30.0.10/hook",
        "https://127.0.0.1/hook",
    ]:
        with pytest.raises(DestinationRefused):
            policy.check_url(url)
    with pytest.raises(DestinationRefused) as refused:
        policy.check_url("http://ehr.hospital.example/fhir")  # allow-listed still needs https
    assert refused.value.reason == "https-required"


def test_allow_listed_network_admits_an_internal_name() -> None:
    def resolve(host: str, port: int) -> Sequence[IPAddress]:
        return [ipaddress.ip_address("10.1.0.4")]

    policy = DestinationPolicy.create(production=True, allow="10.1.0.0/16", resolver=resolve)
    assert policy.check_url("https://ehr.example.org/fhir").addresses == (
        ipaddress.ip_address("10.1.0.4"),
    )


@pytest.mark.parametrize("entry", ["not a host", "10.0.0.0/33", "http://x.example", "a..b"])
def test_malformed_allow_list_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError):
        AllowList.parse(entry)


def test_dev_and_test_allow_http_and_loopback_but_nothing_else_internal() -> None:
    dev = DestinationPolicy.create(production=False)
    assert dev.check_url("http://127.0.0.1:8080/hook").port == 8080
    assert dev.check_url("http://[::1]:8080/hook")
    assert dev.check_url("http://localhost:8080/hook").host == "localhost"
    for url in ["http://10.0.0.1/", "http://169.254.169.254/", "http://metadata.google.internal/"]:
        with pytest.raises(DestinationRefused):
            dev.check_url(url)
    strict = DestinationPolicy.create(production=False, allow_loopback=False)
    with pytest.raises(DestinationRefused):
        strict.check_url("http://127.0.0.1:8080/hook")
    assert DestinationPolicy.create(production=True, allow_loopback=True).check_url(
        "https://127.0.0.1/hook"
    )


def test_numeric_forms_normalise_like_the_os_resolver() -> None:
    loopback = ipaddress.ip_address("127.0.0.1")
    for form in ["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "127.0.1", "0x7f.0.0.1"]:
        assert literal_address(form) == loopback
    assert literal_address("deadbeef.example") is None
    assert literal_address("1e100.net") is None
    assert address_kind(ipaddress.ip_address(PUBLIC_V4)) is None


def test_token_endpoint_must_stay_on_the_ehr_host_in_production() -> None:
    policy = resolver_of({"ehr.example.org": [PUBLIC_V4], "auth.example.net": [PUBLIC_V4]})
    base = "https://ehr.example.org/fhir/R4"
    assert policy.check_token_endpoint("https://ehr.example.org/oauth2/token", base)
    with pytest.raises(DestinationRefused) as refused:
        policy.check_token_endpoint("https://auth.example.net/token", base)
    assert refused.value.reason == "foreign-token-endpoint"
    with pytest.raises(DestinationRefused) as refused:
        policy.check_token_endpoint("https://169.254.169.254/token", base)
    assert refused.value.reason == "link-local"
    allowed = DestinationPolicy.create(
        production=True, allow="auth.example.net", resolver=policy.resolver
    )
    assert allowed.check_token_endpoint("https://auth.example.net/token", base)
