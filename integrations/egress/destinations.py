"""Where careloop may connect: URL, host name and every resolved address checked against rules.

A destination must be https in production and every address its host resolves to must be
public: never loopback, private, link-local (cloud metadata at 169.254.169.254), shared CGNAT,
multicast, unspecified, reserved, IPv6 ULA or site-local, nor an IPv4 address wrapped in IPv6
(mapped, 6to4, NAT64). Numeric host forms the OS resolver understands (``2130706433``,
``0x7f.1``, ``0177.0.0.1``) are normalised before the check, and names that only exist inside a
network (``metadata.google.internal``, ``*.internal``, ``*.local``, single labels) are refused
without asking DNS. An operator exempts hosts or networks with ``CARELOOP_EGRESS_ALLOW``; dev
and test allow loopback so local receivers work.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[IPAddress]]
"""Every address a host name resolves to (the seam for the OS resolver)."""

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network
_BLOCKED: tuple[tuple[IPNetwork, str], ...] = (
    (_V4("127.0.0.0/8"), "loopback"),
    (_V6("::1/128"), "loopback"),
    (_V4("0.0.0.0/8"), "unspecified"),
    (_V6("::/128"), "unspecified"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.168.0.0/16"), "private"),
    (_V6("fc00::/7"), "private"),  # unique local
    (_V6("fec0::/10"), "private"),  # deprecated site-local
    (_V4("169.254.0.0/16"), "link-local"),  # includes the cloud metadata address
    (_V6("fe80::/10"), "link-local"),
    (_V4("100.64.0.0/10"), "shared"),  # carrier-grade NAT
    (_V4("224.0.0.0/4"), "multicast"),
    (_V6("ff00::/8"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved"),  # includes broadcast
)
_NAT64 = _V6("64:ff9b::/96")
_METADATA_NAMES = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "kubernetes"}
)
_INTERNAL_SUFFIXES = (".internal", ".local", ".localdomain", ".home.arpa", ".intranet", ".lan")
_LOOPBACK_NAMES = ("localhost", ".localhost")
_NUMERIC_HOST = re.compile(r"[0-9a-fA-FxX.]+")


class DestinationRefused(Exception):
    """A destination careloop must not connect to; ``reason`` is a short machine code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    @property
    def transient(self) -> bool:
        """Only a failed DNS lookup may succeed later; an address or URL refused stays so."""
        return self.reason == "unresolvable"


@dataclass(frozen=True)
class AllowList:
    """Operator exemptions: exact host names, ``.suffix`` names, and networks (CIDRs)."""

    hosts: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, text: str) -> AllowList:
        """Parse ``host, .suffix.example, 10.2.0.0/16, 192.0.2.7`` (ValueError if malformed)."""
        hosts: set[str] = set()
        suffixes: list[str] = []
        networks: list[IPNetwork] = []
        for raw in text.split(","):
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = entry.removeprefix(".")
            if not re.fullmatch(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_-]+)*", name):
                raise ValueError(f"CARELOOP_EGRESS_ALLOW entry {raw.strip()!r} is no host or CIDR")
            if entry.startswith("."):
                suffixes.append(entry)
            else:
                hosts.add(entry)
        return cls(frozenset(hosts), tuple(suffixes), tuple(networks))

    def allows_host(self, host: str) -> bool:
        """Whether ``host`` (a normalised name) is exempt from the address rules."""
        return host in self.hosts or any(host.endswith(s) for s in self.suffixes)

    def allows_address(self, address: IPAddress) -> bool:
        """Whether ``address`` lies in an allow-listed network."""
        return any(address in network for network in self.networks)


def system_resolver(host: str, port: int) -> list[IPAddress]:
    """Every address the OS resolver gives for ``host`` (A and AAAA), in its order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DestinationRefused("unresolvable", f"{host} could not be resolved") from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


@dataclass(frozen=True)
class Destination:
    """A checked URL's parts: scheme, normalised host, port and the addresses it may use."""

    scheme: str
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


@dataclass(frozen=True)
class DestinationPolicy:
    """The rules every outbound connection obeys; build one from settings with ``create``."""

    require_https: bool
    allow_loopback: bool
    allow: AllowList = AllowList()
    resolver: Resolver = field(default=system_resolver, compare=False)

    @classmethod
    def create(
        cls,
        *,
        production: bool,
        allow: str = "",
        allow_loopback: bool | None = None,
        resolver: Resolver = system_resolver,
    ) -> DestinationPolicy:
        """Production: https only, no loopback. Elsewhere: http allowed, loopback allowed."""
        return cls(
            require_https=production,
            allow_loopback=not production if allow_loopback is None else allow_loopback,
            allow=AllowList.parse(allow),
            resolver=resolver,
        )

    # -- the checks -----------------------------------------------------------------------

    def check_url(self, url: str) -> Destination:
        """Check scheme, host name and every address the host resolves to (registration).

        A name the operator allow-listed is not resolved here: it may only resolve inside the
        network careloop's workers run in (its addresses are still pinned when connecting).
        """
        scheme, host, port = self.check_static(url)
        if literal_address(host) is None and self.allow.allows_host(host):
            return Destination(scheme, host, port, ())
        return Destination(scheme, host, port, self.addresses_for(host, port))

    def check_static(self, url: str) -> tuple[str, str, int]:
        """Check what needs no DNS: scheme, host syntax and name; (scheme, host, port)."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise DestinationRefused("invalid-url", "not a valid URL") from exc
        scheme = parsed.scheme
        if scheme not in ("https", "http") or not parsed.host:
            raise DestinationRefused("invalid-url", "the URL must be absolute http(s)")
        if scheme != "https" and self.require_https:
            raise DestinationRefused("https-required", "the URL must be https in production")
        host = normalise_host(parsed.host)
        port = parsed.port or (443 if scheme == "https" else 80)
        self.check_name(host)
        return scheme, host, port

    def check_name(self, host: str) -> None:
        """Refuse names that only exist inside a network (no DNS asked)."""
        if self.allow.allows_host(host) or literal_address(host) is not None:
            return
        if host in _LOOPBACK_NAMES or host.endswith(_LOOPBACK_NAMES[1]):
            if not self.allow_loopback:
                raise DestinationRefused("loopback", f"{host} is a loopback name")
            return
        if host in _METADATA_NAMES or host.endswith(".metadata.google.internal"):
            raise DestinationRefused("metadata", f"{host} is a cloud metadata service")
        if host.endswith(_INTERNAL_SUFFIXES):
            raise DestinationRefused("internal-name", f"{host} is a private-network name")
        if "." not in host:
            raise DestinationRefused("internal-name", f"{host} is not a fully qualified name")

    def addresses_for(self, host: str, port: int) -> tuple[IPAddress, ...]:
        """Every address ``host`` stands for, each checked; refused if any one is not allowed.

        A literal (in any numeric form) is not resolved. A host allow-listed by name may
        resolve anywhere. Checking every A/AAAA answer, not just the first, keeps a name with
        one public and one internal address from being used to reach the internal one.
        """
        host = normalise_host(host)
        literal = literal_address(host)
        if literal is not None:
            addresses: Sequence[IPAddress] = (literal,)
        else:
            self.check_name(host)
            addresses = self.resolver(host, port)
            if not addresses:
                raise DestinationRefused("unresolvable", f"{host} has no address")
        if literal is None and self.allow.allows_host(host):
            return tuple(addresses)
        for address in addresses:
            self.check_address(address)
        return tuple(addresses)

    def check_address(self, address: IPAddress) -> None:
        """Refuse an address that is not public (unless allowed), naming its kind."""
        if self.allow.allows_address(address):
            return
        kind = address_kind(address)
        if kind is None:
            return
        if kind == "loopback" and self.allow_loopback:
            return
        raise DestinationRefused(kind, f"{address} is not a public address ({kind})")

    def check_token_endpoint(self, token_endpoint: str, fhir_base_url: str) -> Destination:
        """Check a token endpoint an EHR's smart-configuration names.

        Besides the address rules, in production it must be on the FHIR base URL's host or on
        a host the operator allow-listed by name: a discovery document cannot send careloop's
        signed assertions to an arbitrary third party.
        """
        destination = self.check_url(token_endpoint)
        if self.require_https:
            base_host = normalise_host(httpx.URL(fhir_base_url).host)
            if destination.host != base_host and not self.allow.allows_host(destination.host):
                raise DestinationRefused(
                    "foreign-token-endpoint",
                    f"the token endpoint host {destination.host} is not the EHR's host"
                    " (allow-list it in CARELOOP_EGRESS_ALLOW)",
                )
        return destination


def normalise_host(host: str) -> str:
    """Lower case, no trailing dot, no IPv6 brackets; numeric IPv4 forms as dotted quads."""
    cleaned = host.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")
    literal = literal_address(cleaned)
    return str(literal) if literal is not None else cleaned


def literal_address(host: str) -> IPAddress | None:
    """The address a numeric host stands for, as the OS would read it, or None for a name.

    Besides dotted quads and IPv6, ``inet_aton`` accepts the legacy forms ``2130706433``,
    ``0x7f000001``, ``0177.0.0.1`` and ``127.1``: all 127.0.0.1.
    """
    text = host.removeprefix("[").removesuffix("]")
    try:
        return ipaddress.ip_address(text.split("%")[0] if ":" in text else text)
    except ValueError:
        pass
    if _NUMERIC_HOST.fullmatch(text) and text[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def address_kind(address: IPAddress) -> str | None:
    """Why ``address`` is not public ("loopback", "private", ...), or None if it is."""
    for embedded in _embedded_ipv4(address):
        kind = address_kind(embedded)
        if kind is not None:
            return kind
    for network, kind in _BLOCKED:
        if address.version == network.version and address in network:
            return kind
    if not address.is_global:
        return "reserved"
    return None


def _embedded_ipv4(address: IPAddress) -> Iterable[ipaddress.IPv4Address]:
    if not isinstance(address, ipaddress.IPv6Address):
        return ()
    found = [a for a in (address.ipv4_mapped, address.sixtofour) if a is not None]
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    if address.teredo is not None:
        found.append(address.teredo[1])
    # IPv4-compatible (::a.b.c.d, deprecated) addresses also carry an IPv4 address.
    if int(address) >> 32 == 0 and int(address) > 1:
        found.append(ipaddress.IPv4Address(int(address)))
    return found
