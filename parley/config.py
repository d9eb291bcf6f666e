"""Parley settings: one frozen dataclass (read from CLI flags and ``PARLEY_*``
by ``server/settings.py``).

Every setting has an environment variable named ``PARLEY_<FIELD>`` (upper
case).  The README's config table is generated from ``SETTINGS_DOC`` so the
two cannot drift (``tests/parley/test_config.py`` checks that).

Precedence: explicit CLI flag > environment variable > default.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    """A setting has a value Parley cannot use; the message names it."""


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    api_port: int = 8080
    gateway_port: int = 8765
    data_dir: Path = Path(".parley")
    # Comma-separated PostgreSQL DSNs.  Empty means the embedded PostgreSQL
    # under data_dir.  The first DSN also holds the directory (accounts,
    # workspace placement); workspaces are spread over all of them.
    database_url: str = ""
    # Empty means the in-process hub and presence (one process).  redis://...
    # selects Redis pub/sub and presence; several comma-separated URLs select a
    # Redis Cluster (sharded pub/sub; presence keys routed by slot).
    redis_url: str = ""
    s3_endpoint: str = ""
    s3_bucket: str = ""
    s3_region: str = "us-east-1"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    # HMAC secret for access tokens.  Empty: generated once and kept in
    # data_dir/secret (fine for one host; set it explicitly for a fleet).
    jwt_secret: str = ""
    jwt_issuer: str = "parley"
    jwt_audience: str = "parley"
    access_token_ttl_s: int = 900
    # Refresh tokens rotate on every use; a family (auth session) lives this
    # long without use.
    refresh_token_ttl_s: int = 30 * 24 * 3600
    invite_ttl_s: int = 7 * 24 * 3600  # default lifetime of an invite link
    # REST mutations per user (token bucket per API process); login, register
    # and refresh are limited per client address with the same bucket.
    rest_rate_per_s: float = 20.0
    rest_burst: int = 100
    # Channels with more members than this need the mention_channel_large
    # permission for @channel / @here.
    large_channel_members: int = 50
    # Allowed browser origins for gateway upgrades (comma-separated); requests
    # without an Origin header (non-browser clients) are not affected.
    allowed_origins: str = "http://localhost,http://127.0.0.1"
    max_message_chars: int = 40_000
    # Gateway limits per connection (token bucket) and per user and gateway.
    ws_commands_per_s: float = 50.0
    ws_command_burst: float = 200.0
    ws_max_connections_per_user: int = 32
    # Most messages one channel replays on `resume`; beyond it the client is
    # sent channel.resync_required and pages through history over REST.
    resume_max_events: int = 1_000
    pg_pool_max: int = 16
    # Group commit: flush a batch after this many ms or this many messages.
    commit_window_ms: float = 1.0
    commit_max_batch: int = 512
    # Concurrent group-commit transactions per shard (a channel uses one lane).
    commit_lanes: int = 4
    # Parts of each shard's search queue, indexed concurrently (one loop and
    # one PostgreSQL backend each, in every serving process; a part has one
    # indexer at a time across the fleet).  docs/benchmarks.md, *Indexer
    # partitions*, has the measured rates.
    search_index_partitions: int = 4
    # Allocations between young-generation garbage collections in a server
    # process (Python's default is 700).  0 keeps Python's default.  See
    # server/runner.py tune_gc: with thousands of sockets, collections at the
    # default rate took a third of the gateway's CPU.
    gc_gen0_threshold: int = 50_000
    # Server processes of `parley serve|api|gateway` sharing the ports with
    # SO_REUSEPORT (server/workers.py); 0 means one per core.
    workers: int = 0
    log_level: str = "info"
    # Files (issue 6).  Workspaces may tighten these limits, never loosen them.
    max_file_bytes: int = 1 << 30  # 1 GiB
    # Comma-separated MIME patterns (``image/*``, ``application/pdf``); ``*`` = any.
    # Checked against the declared type on request and the sniffed type on completion.
    allowed_file_types: str = "*"
    upload_url_ttl_s: int = 900  # lifetime of a direct-upload ticket
    download_url_ttl_s: int = 300  # lifetime of a download URL (at most 15 minutes)
    pending_upload_ttl_s: int = 24 * 3600  # uploads never completed are removed after this
    # Thumbnails run in a child process with these bounds, so a decompression
    # bomb costs at most this much CPU time and memory.
    thumbnail_max_pixels: int = 40_000_000
    thumbnail_timeout_s: float = 10.0
    thumbnail_memory_mb: int = 1024
    # The Slack-compatible Web API (issue 14): Slack's per-method rate tiers
    # (1, 20, 50, 100 calls per minute per app) multiplied by this, and
    # chat.postMessage / incoming webhooks per app and channel.
    webapi_tier_scale: float = 1.0
    webapi_post_per_channel_per_s: float = 1.0
    webapi_post_burst: int = 10
    # The Events API (issue 15): requests to apps' URLs.  Slack's schedule:
    # answer within 3 s, retried at once, after about 1 and 5 minutes.
    app_events_timeout_s: float = 3.0
    # The API's base URL as apps reach it (slash commands' response_url).
    # Empty: the URL a REST request came in on; http://host:api_port from the gateway.
    public_api_url: str = ""
    public_gateway_url: str = ""
    app_events_retry_delays_s: str = "0,60,300"
    app_events_poll_ms: float = 200.0  # how often a dispatcher looks for new messages
    app_events_concurrency_per_app: int = 4  # requests in flight to one app, per process
    # Failing apps (Slack's rule): events are turned off for an app with at
    # least 95% of at least this many tries failed over the window.
    app_events_disable_min_tries: int = 100
    app_events_disable_window_s: float = 3600.0
    # Where the Events API's HTTP dispatcher runs (server/app_events_proc.py):
    # "process" (a child process of the API process, at a lower CPU priority,
    # so apps never take the gateway's CPU), "inline" (in the API process's
    # event loop: tests), "off" (none here: run `parley app-events` yourself).
    app_events_dispatch: str = "process"
    app_events_nice: int = 10  # the child's nice increment (0..19)
    # Outbound requests (apps' URLs) may not reach loopback, private, link-local,
    # CGNAT, multicast or metadata addresses, except these CIDRs.
    outbound_allowed_cidrs: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def database_urls(self) -> list[str]:
        return [u.strip() for u in self.database_url.split(",") if u.strip()]

    @property
    def redis_urls(self) -> list[str]:
        return [u.strip() for u in self.redis_url.split(",") if u.strip()]

    @property
    def app_events_retry_delays(self) -> tuple[float, ...]:
        return tuple(float(d) for d in self.app_events_retry_delays_s.split(",") if d.strip())

    @property
    def outbound_cidrs(self) -> tuple[str, ...]:
        return tuple(c.strip() for c in self.outbound_allowed_cidrs.split(",") if c.strip())

    @property
    def file_types(self) -> tuple[str, ...]:
        return tuple(t.strip().lower() for t in self.allowed_file_types.split(",") if t.strip())

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(o.strip().rstrip("/")
                         for o in self.allowed_origins.split(",") if o.strip())


#: Upper bound of ``workers``: a typo (``--workers 1000``) is refused, not forked.
MAX_WORKERS = 256

SETTINGS_DOC: dict[str, str] = {
    "host": "Interface the API and gateway listen on",
    "api_port": "REST API port",
    "gateway_port": "WebSocket gateway port",
    "data_dir": "Embedded PostgreSQL data, local files and the generated secret",
    "database_url":
        "PostgreSQL DSN(s), comma-separated for shards; empty = embedded PostgreSQL",
    "redis_url":
        "Redis URL for the hub and presence; several comma-separated = Redis Cluster;"
        " empty = in-process",
    "s3_endpoint": "S3-compatible endpoint URL (MinIO, ...); empty = AWS S3 when s3_bucket is set",
    "s3_bucket": "S3 bucket for files; empty = files on local disk under data_dir/files",
    "s3_region": "S3 region",
    "s3_access_key": "S3 access key id",
    "s3_secret_key": "S3 secret access key",
    "jwt_secret": "HMAC-SHA256 secret for access tokens; empty = generated in data_dir/secret",
    "jwt_issuer": "`iss` claim issued and required",
    "jwt_audience": "`aud` claim issued and required",
    "access_token_ttl_s": "Access token lifetime in seconds",
    "refresh_token_ttl_s": "Refresh token lifetime in seconds (each use rotates it)",
    "invite_ttl_s": "Default lifetime of workspace invite links, in seconds",
    "rest_rate_per_s": "REST mutations per second per user (token bucket refill rate)",
    "rest_burst": "REST mutation burst per user (token bucket size)",
    "large_channel_members":
        "Members above which @channel/@here needs the mention_channel_large permission",
    "allowed_origins": "Browser origins allowed to open gateway connections (comma-separated)",
    "max_message_chars": "Longest message text accepted, in characters",
    "ws_commands_per_s": "Gateway commands per second per connection (sustained)",
    "ws_command_burst": "Gateway command burst per connection (token bucket size)",
    "ws_max_connections_per_user": "WebSockets one user may hold on one gateway",
    "resume_max_events": "Most messages a channel replays on resume before resync_required",
    "pg_pool_max": "Connections per PostgreSQL pool",
    "commit_window_ms": "Group-commit window in milliseconds",
    "commit_max_batch": "Group-commit batch size limit (messages)",
    "commit_lanes": "Concurrent group-commit transactions per shard (a channel uses one lane)",
    "search_index_partitions":
        "Parts of each shard's search queue indexed concurrently (one backend each)",
    "gc_gen0_threshold":
        "Allocations between young garbage collections in a server process (0: Python's 700)",
    "workers": "Server processes sharing the ports (SO_REUSEPORT); 0: one per core",
    "log_level": "Logging level (debug, info, warning, error)",
    "max_file_bytes": "Largest file accepted, in bytes (workspaces may set less)",
    "allowed_file_types":
        "File types accepted: comma-separated MIME patterns such as image/*; * = any",
    "upload_url_ttl_s": "Lifetime of a direct-upload URL, in seconds (at most 3600)",
    "download_url_ttl_s": "Lifetime of a file download URL, in seconds (at most 900)",
    "pending_upload_ttl_s": "Uploads not completed within this many seconds are removed",
    "thumbnail_max_pixels": "Images with more pixels than this get no thumbnail (bomb guard)",
    "thumbnail_timeout_s": "Wall-clock limit of one thumbnail, in seconds",
    "thumbnail_memory_mb": "Address-space limit of the thumbnail worker process, in MiB",
    "webapi_tier_scale":
        "Multiplier of Slack's Web API rate tiers (1, 20, 50, 100 calls per minute per app and"
        " method)",
    "webapi_post_per_channel_per_s":
        "chat.postMessage and incoming-webhook posts per second per app and channel (refill)",
    "webapi_post_burst": "Burst of chat.postMessage per app and channel (token bucket size)",
    "app_events_timeout_s": "Seconds an app has to answer an Events API request "
                            "or a slash command",
    "public_gateway_url": "The gateway's base URL as Socket Mode apps reach it "
                          "(ws:// or wss://, no path); empty: this process's gateway",
    "public_api_url": "The API's base URL as apps reach it (slash commands' response_url); "
                      "empty: the request's own URL (REST), http://host:api_port (gateway)",
    "app_events_retry_delays_s":
        "Delays in seconds before each retry of an undelivered event (comma-separated)",
    "app_events_poll_ms": "How often an event dispatcher looks for new messages, in ms",
    "app_events_concurrency_per_app": "Events API requests in flight to one app, per process",
    "app_events_disable_min_tries":
        "Event delivery tries an app needs in the window before it can be disabled for failing "
        "(95% or more failed)",
    "app_events_disable_window_s":
        "Seconds over which an app's event delivery failures are counted (Slack: 60 minutes)",
    "app_events_dispatch":
        "Where events to apps' request URLs are sent from: process (a child process at a lower "
        "CPU priority), inline (the API process), off (run `parley app-events` separately)",
    "app_events_nice": "Nice increment of the Events API dispatcher's child process (0..19)",
    "outbound_allowed_cidrs":
        "CIDRs outbound requests may reach although private (comma-separated; tests: loopback)",
}


def validate(s: Settings) -> None:
    """ConfigError naming the first setting Parley cannot use."""
    for port_name in ("api_port", "gateway_port"):
        port = getattr(s, port_name)
        if not 0 <= port <= 65535:
            raise ConfigError(f"{port_name} must be 0..65535, not {port}")
    if s.access_token_ttl_s < 30:
        raise ConfigError("access_token_ttl_s must be at least 30 seconds")
    if s.refresh_token_ttl_s < s.access_token_ttl_s or s.invite_ttl_s < 60:
        raise ConfigError("refresh_token_ttl_s must be >= access_token_ttl_s and "
                          "invite_ttl_s >= 60")
    if s.rest_rate_per_s <= 0 or s.rest_burst < 1 or s.large_channel_members < 1:
        raise ConfigError("rest_rate_per_s must be > 0, rest_burst and "
                          "large_channel_members >= 1")
    if s.ws_commands_per_s <= 0 or s.ws_command_burst < 1 or s.ws_max_connections_per_user < 1:
        raise ConfigError("ws_commands_per_s must be > 0, ws_command_burst and "
                          "ws_max_connections_per_user >= 1")
    if s.max_message_chars < 1:
        raise ConfigError("max_message_chars must be positive")
    if s.gc_gen0_threshold < 0:
        raise ConfigError("gc_gen0_threshold must be >= 0")
    if not 0 <= s.workers <= MAX_WORKERS:
        raise ConfigError(f"workers must be between 0 (one per core) and {MAX_WORKERS}")
    if not 1 <= s.search_index_partitions <= 64:
        raise ConfigError("search_index_partitions must be between 1 and 64")
    if s.commit_max_batch < 1 or s.commit_window_ms < 0 or s.commit_lanes < 1:
        raise ConfigError(
            "commit_max_batch and commit_lanes must be >= 1 and commit_window_ms >= 0")
    if s.s3_endpoint and not s.s3_bucket:
        raise ConfigError("s3_endpoint needs s3_bucket")
    if s.max_file_bytes < 1 or not 60 <= s.upload_url_ttl_s <= 3600:
        raise ConfigError("max_file_bytes must be >= 1 and upload_url_ttl_s 60..3600")
    if not 1 <= s.download_url_ttl_s <= 900 or s.pending_upload_ttl_s < s.upload_url_ttl_s:
        raise ConfigError("download_url_ttl_s must be 1..900 and pending_upload_ttl_s >= "
                          "upload_url_ttl_s")
    if (s.thumbnail_max_pixels < 1 or s.thumbnail_timeout_s <= 0
            or s.thumbnail_memory_mb < 64):
        raise ConfigError("thumbnail_max_pixels must be >= 1, thumbnail_timeout_s > 0 and "
                          "thumbnail_memory_mb >= 64")
    if s.webapi_tier_scale <= 0 or s.webapi_post_per_channel_per_s <= 0 or s.webapi_post_burst < 1:
        raise ConfigError("webapi_tier_scale and webapi_post_per_channel_per_s must be > 0, "
                          "webapi_post_burst >= 1")
    try:
        delays = s.app_events_retry_delays
        for cidr in s.outbound_cidrs:
            ipaddress.ip_network(cidr, strict=False)
    except ValueError as exc:
        raise ConfigError("app_events_retry_delays_s must be comma-separated seconds and "
                          "outbound_allowed_cidrs comma-separated CIDRs") from exc
    if (s.app_events_timeout_s <= 0 or s.app_events_poll_ms <= 0
            or s.app_events_concurrency_per_app < 1 or len(delays) > 10
            or any(d < 0 for d in delays)):
        raise ConfigError("app_events_timeout_s and app_events_poll_ms must be > 0, "
                          "app_events_concurrency_per_app >= 1, at most 10 retry delays >= 0")
    if s.app_events_disable_min_tries < 1 or s.app_events_disable_window_s < 60:
        raise ConfigError("app_events_disable_min_tries must be >= 1 and "
                          "app_events_disable_window_s >= 60 (counts are per minute)")
    if s.app_events_dispatch not in {"process", "inline", "off"} or not (
            0 <= s.app_events_nice <= 19):
        raise ConfigError("app_events_dispatch must be process, inline or off, and "
                          "app_events_nice 0..19")
    if s.log_level.lower() not in {"debug", "info", "warning", "error"}:
        raise ConfigError(f"log_level must be debug, info, warning or error, not {s.log_level!r}")
