"""Where a webhook may point (SSRF): ``https`` URLs whose host resolves to public addresses only.

A tenant chooses the URL and our function makes the request from inside AWS, so the URL must not reach anything a
tenant could not reach from the internet: the instance metadata service (169.254.169.254), the VPC, loopback. The
host is resolved and **every** address it resolves to is checked, both when the subscription is created and before
each delivery (DNS can change in between: rebinding), and the delivery then connects to the checked address itself
(:mod:`spectra.notify.transport`), so a second lookup cannot swap it. Names are checked through their addresses,
which also catches spellings such as ``0x7f.1`` or ``[::ffff:10.0.0.1]``.

``allow_loopback`` (setting ``WEBHOOK_ALLOW_LOOPBACK``, template parameter ``WebhookAllowLoopback``, set by the local
stack only) additionally accepts loopback addresses, over plain ``http`` too, so a receiver on this machine works
out of the box. Every other refusal stands.

A URL is taken as the tenant wrote it, never rewritten: outside its host (which may be an internationalised name) it
must be printable ASCII, so a space, a control character or a non-ASCII letter in the path or query is refused
(percent-encode it, as RFC 3986 asks) rather than encoded by us, which would guess at the encoding and send a request
to another target than the one stored. Such a URL could not be sent anyway: ``http.client`` refuses it on every
attempt. Port 0 is refused too: it would otherwise be taken for the scheme's default port.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from spectra.errors import InvalidRequest

MAX_URL_LENGTH = 2048
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
#: Special-purpose IPv4 blocks that are not globally reachable (IANA's registry, RFC 6890), listed here rather than
#: left to ``ipaddress``, whose tables changed between patch releases of the same Python (192.0.0.0/24 was not private
#: before the CVE-2024-4032 fix): the rule must not depend on the Lambda runtime's patch level. 192.0.0.9 and .10
#: (global anycast services) are in the /24 and still refused: no webhook receiver lives there.
_NOT_GLOBAL_V4 = tuple(
    ipaddress.IPv4Network(block)
    for block in ("192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4")
)
#: The same for IPv6: documentation (2001:db8::/32, and 3fff::/20, which 3.11.7 calls global), NAT64 local use,
#: discard-only and benchmarking blocks.
_NOT_GLOBAL_V6 = tuple(
    ipaddress.IPv6Network(block)
    for block in ("2001:db8::/32", "3fff::/20", "64:ff9b:1::/48", "100::/64", "2001:2::/48")
)
#: A space or a control character anywhere in the URL (``urlsplit`` would silently drop tabs and newlines).
_UNSENDABLE = re.compile(r"[\x00-\x20\x7f]")
#: A public DNS name: two or more labels of letters, digits and inner hyphens, the last one not numeric. Anything else
#: (a single label such as ``localhost`` or an intranet name, ``0x7f.1``, underscores) cannot be a public host and is
#: refused before any lookup.
_PUBLIC_NAME = re.compile(
    r"(?=.{1,253}\Z)(?:(?!-)[a-z0-9-]{1,63}(?<!-)\.)+(?!-)(?=[a-z0-9-]*[a-z])[a-z0-9-]{1,63}(?<!-)\Z"
)

Resolver = Callable[[str, int], list[str]]


class UrlRefused(InvalidRequest):
    """The URL is not one webhooks may be sent to; ``message`` says why."""

    code = "url_refused"


def without_query(url: str) -> str:
    """The URL to show its tenant (a redirect's target in the subscription's delivery state): without its query
    string or fragment, which may carry a token the receiver checks."""
    parts = urlsplit(url)
    return parts._replace(query="", fragment="").geturl()


_HOST_NAME = re.compile(r"[a-z0-9.-]*", re.IGNORECASE)


def _a_host_name(host: str) -> bool:
    """Whether ``host`` is a name a request could go to: letters, digits, hyphens and dots once in its ASCII form (a
    subscription's own URL may hold an internationalised name)."""
    try:
        return bool(_HOST_NAME.fullmatch(host.encode("idna").decode("ascii")))
    except UnicodeError:
        return False


#: What :func:`origin` writes for a URL that does not parse.
UNPARSEABLE = "<a URL that does not parse>"
_URL_IN_TEXT = re.compile(r"https?://[^\s'\"<>]+", re.IGNORECASE)


def origins_only(text: str) -> str:
    """``text`` with each URL in it cut down to its :func:`origin`: an error that names a redirect's target (which
    keeps the receiver's path, token and all) goes to the logs and, in a disabled event, to the bus."""
    return _URL_IN_TEXT.sub(lambda match: origin(match[0]), text)


def origin(url: str) -> str:
    """The URL to write where others may read it (logs, the bus): its scheme, host and port only. Chat and
    automation receivers keep their token in the path (Slack's ``/services/T…/B…/<token>``, Discord's
    ``/api/webhooks/<id>/<token>``), not only in the query string. A URL that does not parse (quoted in a
    receiver's reason phrase, say) is left out whole."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return UNPARSEABLE
    host = parts.hostname or ""
    if _is_ip(host):
        # an IPv6 literal in its brackets, without its zone (``%25<anything>``, which urlsplit keeps: a path too)
        host = f"[{host.split('%', 1)[0]}]" if ":" in host else host
    elif not _a_host_name(host):
        # no host a request could go to: urlsplit takes a path after backslashes or an encoded slash
        # (``https://hooks.example%2Fservices%2F<token>``) for part of the host, which would be written whole
        return UNPARSEABLE
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system resolver, as a connection would use it)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Endpoint:
    """A checked URL: connect to one of ``addresses``, send ``Host: host`` (and, over TLS, SNI and the certificate
    check for ``host``)."""

    url: str
    scheme: str
    host: str
    port: int
    target: str  # path and query, as sent in the request line
    addresses: tuple[str, ...]


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, Teredo client, NAT64), which is what it reaches."""
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def address_refusal(address: str, *, allow_loopback: bool) -> str | None:
    """Why a connection to ``address`` is refused, or None when it is a public address (or allowed loopback)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        ip = _embedded_ipv4(ip) or ip
    if ip.is_loopback:
        return None if allow_loopback else "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:  # fec0::/10: deprecated, yet is_global says so
        return "a site-local address"
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return "not a public address"
    special = _NOT_GLOBAL_V4 if isinstance(ip, ipaddress.IPv4Address) else _NOT_GLOBAL_V6
    if ip.is_private or any(ip in block for block in special):
        return "a private address"
    if not ip.is_global:
        return "not a public address"
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


class UrlPolicy:
    def __init__(self, *, allow_loopback: bool = False, resolver: Resolver = resolve) -> None:
        self.allow_loopback = allow_loopback
        self._resolve = resolver

    def endpoint(self, url: str) -> Endpoint:
        """The checked endpoint of ``url``; :class:`UrlRefused` says why not."""
        if len(url) > MAX_URL_LENGTH:
            raise UrlRefused(f"the URL is longer than {MAX_URL_LENGTH} characters")
        if _UNSENDABLE.search(url):
            raise UrlRefused("the URL must not contain spaces or control characters (percent-encode them)")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise UrlRefused(f"not a valid URL: {exc}") from None
        if parts.scheme not in ("https", "http"):
            raise UrlRefused("the URL must start with https://")
        if parts.username is not None or parts.password is not None:
            raise UrlRefused("the URL must not carry credentials (user:password@)")
        if port == 0:
            raise UrlRefused("the URL's port must be 1 to 65535")
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if not (target + parts.fragment).isascii():
            raise UrlRefused("the URL's path and query must be ASCII (percent-encode other characters)")
        host = parts.hostname
        if not host:
            raise UrlRefused("the URL has no host")
        if not _is_ip(host):
            try:
                name = host.encode("idna").decode("ascii").lower()
            except UnicodeError:
                raise UrlRefused("the URL's host is not a valid name") from None
            if not _PUBLIC_NAME.fullmatch(name.rstrip(".")):
                raise UrlRefused(f"{host} is not a public host name (use a fully qualified name or an address)")
        port = port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = self._resolve(host, port)
        except (OSError, UnicodeError):
            raise UrlRefused(f"{host} does not resolve") from None
        if not addresses:
            raise UrlRefused(f"{host} does not resolve")
        for address in addresses:
            reason = address_refusal(address, allow_loopback=self.allow_loopback)
            if reason is not None:
                raise UrlRefused(f"{host} resolves to {address}, {reason}", details={"host": host, "address": address})
        if parts.scheme == "http":
            loopback_only = all(ipaddress.ip_address(a.split("%", 1)[0]).is_loopback for a in addresses)
            if not (self.allow_loopback and loopback_only):
                raise UrlRefused("the URL must start with https://")
        # A fully qualified name's trailing dot is not part of the name a certificate is issued for (nor what curl
        # or urllib3 send as SNI and Host): kept, every delivery over TLS failed the certificate check.
        named = host[:-1] if host.endswith(".") and not host.endswith("..") else host
        return Endpoint(url=url, scheme=parts.scheme, host=named, port=port, target=target, addresses=tuple(addresses))
