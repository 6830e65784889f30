"""Typed application keys shared by the app factory and the handlers."""

from __future__ import annotations

from aiohttp import web

from .committer import Committer
from .config import Config
from .events import EventBus
from .exchange import Exchange

CONFIG = web.AppKey("config", Config)
EXCHANGE = web.AppKey("exchange", Exchange)
BUS = web.AppKey("bus", EventBus)
COMMITTER = web.AppKey("committer", Committer)
