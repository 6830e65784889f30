"""Seller endpoint URLs: the accepted shape, and the addresses a buyer refuses by default."""

from __future__ import annotations

import asyncio

import pytest

from bitwrk.endpoints import EndpointRefused, check_endpoint_url, check_public_host

GOOD = ["http://seller.example/bitwrk/v1/tx/7", "https://seller.example:8443/w",
        "http://93.184.216.34:8080", "http://[2001:4860:4860::8888]:80/x"]
BAD = ["ftp://h/x", "http://", "https:/h/w", "javascript:alert(1)", "http://h/w?x=1",
       "http://h/w?", "http://h/w#f", "http://user@h/w", "http://user:pw@h/w",
       "http://h:0/", "http://h:99999/", "http://h:port/", "http://h/a b", "http://h/\n",
       "http://h\\@evil/", "http://h/" + "x" * 300, "http://hé/", "", "h/w", "//h/w"]
LOCAL = ["http://127.0.0.1:9/w", "http://localhost/w", "http://[::1]/w", "http://10.1.2.3/",
         "http://192.168.0.1/", "http://172.16.5.5/", "http://169.254.169.254/latest/",
         "http://0.0.0.0/", "http://100.64.0.1/", "http://[::ffff:127.0.0.1]/",
         "http://[fe80::1]/", "http://[fd00::1]/", "http://224.0.0.1/", "http://127.1/"]


@pytest.mark.parametrize("url", GOOD)
def test_plain_http_urls_are_accepted(url: str) -> None:
    assert check_endpoint_url(url).hostname


@pytest.mark.parametrize("url", BAD)
def test_anything_more_than_scheme_host_port_path_is_refused(url: str) -> None:
    with pytest.raises(EndpointRefused):
        check_endpoint_url(url)


@pytest.mark.parametrize("url", LOCAL)
def test_local_and_private_hosts_are_refused_by_the_buyer(url: str) -> None:
    with pytest.raises(EndpointRefused, match="allow local sellers"):
        asyncio.run(check_public_host(url))


@pytest.mark.parametrize("url", ["http://93.184.216.34:8080/w", "http://[2606:4700::1111]/"])
def test_public_addresses_pass(url: str) -> None:
    asyncio.run(check_public_host(url))  # literal addresses: no DNS traffic
