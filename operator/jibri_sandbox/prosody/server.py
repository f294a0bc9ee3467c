"""A real Prosody (the Debian package) for the tests and the demo.

Everything lives in one directory: config, TLS material, data, log. Prosody
refuses to run as root, so when we are root it runs as the ``prosody`` user
and the directory is handed over to that user. c2s listens on a free loopback
port that survives :meth:`Prosody.restart`, so reconnect tests see the same
server come back; s2s and HTTP are off.

Accounts are written straight into Prosody's internal storage (SCRAM-SHA-1
hashes, the format ``mod_auth_internal_hashed`` keeps) instead of running
``prosodyctl register`` per account: prosodyctl boots a whole Lua runtime each
time (about a second), the file write takes a millisecond, and Prosody reads
the key-value store from disk on every login, so a running server sees the
account at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

log = logging.getLogger(__name__)

PROSODY_BIN: Final = "prosody"
PROSODY_USER: Final = "prosody"
# Matches Prosody's own default for mod_auth_internal_hashed.
ITERATIONS: Final = 10000
_START_TIMEOUT: Final = 20.0
_STOP_TIMEOUT: Final = 5.0


class ProsodyError(RuntimeError):
    """Prosody could not be configured, started or stopped."""


@dataclass(frozen=True)
class XmppDomain:
    """One Jitsi-like deployment on this Prosody: a VirtualHost and its MUC component."""

    domain: str
    muc_domain: str


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _lua_string(value: str) -> str:
    # json.dumps escapes quotes, backslashes and control characters in a form Lua reads too.
    return json.dumps(value, ensure_ascii=True)


def _encode_path_part(value: str) -> str:
    """Prosody's datamanager encoding: every non-alphanumeric byte becomes %xx."""
    return "".join(
        ch if ch.isascii() and ch.isalnum() else "".join(f"%{b:02x}" for b in ch.encode()) for ch in value
    )


def scram_sha1_credentials(password: str, salt: str, iterations: int = ITERATIONS) -> dict[str, Any]:
    """The record mod_auth_internal_hashed stores for a password (RFC 5802 keys, hex)."""
    salted = hashlib.pbkdf2_hmac("sha1", password.encode(), salt.encode(), iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha1).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha1).digest()
    return {
        "stored_key": hashlib.sha1(client_key).hexdigest(),  # noqa: S324 - SCRAM-SHA-1 is the format
        "server_key": server_key.hex(),
        "salt": salt,
        "iteration_count": iterations,
    }


class Prosody:
    """A Prosody server in a directory of its own, on a free loopback port.

    ``extra_domains`` adds more VirtualHosts, each with a ``conference.<domain>``
    MUC, to emulate several Jitsi deployments on one server.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        domain: str = "localhost",
        muc_domain: str | None = None,
        extra_domains: Sequence[str] = (),
        host: str = "127.0.0.1",
        port: int | None = None,
        log_level: str = "info",
    ) -> None:
        self._user = self._run_as_user()
        wanted = Path(directory).resolve() if directory is not None else None
        if wanted is not None and not self._reachable(wanted):
            # e.g. pytest's tmp_path under a 0700 /tmp/pytest-of-root: the prosody user could not
            # even read its config there. Run from a private directory under /tmp instead.
            log.warning(
                "%s is not reachable by the %s user; using a directory under /tmp", wanted, PROSODY_USER
            )
            wanted = None
        self._owns_directory = wanted is None
        self._directory = wanted if wanted is not None else Path(tempfile.mkdtemp(prefix="prosody-"))
        self._domains = [XmppDomain(domain, muc_domain or f"conference.{domain}")] + [
            XmppDomain(extra, f"conference.{extra}") for extra in extra_domains
        ]
        self._host = host
        self._port = port
        self._log_level = log_level
        self._process: subprocess.Popen[bytes] | None = None
        self._prepared = False

    # -- properties ---------------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._port is None:
            self._port = free_port(self._host)
        return self._port

    @property
    def domain(self) -> str:
        return self._domains[0].domain

    @property
    def muc_domain(self) -> str:
        return self._domains[0].muc_domain

    @property
    def domains(self) -> list[XmppDomain]:
        return list(self._domains)

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def ca_file(self) -> Path:
        return self._directory / "certs" / "ca.crt"

    @property
    def config_file(self) -> Path:
        return self._directory / "prosody.cfg.lua"

    @property
    def log_file(self) -> Path:
        return self._directory / "prosody.log"

    @property
    def data_dir(self) -> Path:
        return self._directory / "data"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def describe(self) -> dict[str, Any]:
        """What a client needs to connect (written as xmpp.json by the CLI)."""
        return {
            "host": self.host,
            "port": self.port,
            "domain": self.domain,
            "muc_domain": self.muc_domain,
            "ca_file": str(self.ca_file),
            "domains": [{"domain": d.domain, "muc_domain": d.muc_domain} for d in self._domains],
        }

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        """Start Prosody and return once its c2s port accepts connections."""
        if self.running:
            return
        if not self._prepared:
            self._prepare()
        log = self.log_file.open("ab")
        try:
            self._process = subprocess.Popen(
                [PROSODY_BIN, "--config", str(self.config_file)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal is ours to forward, not Prosody's
                **self._user_args(),
            )
        finally:
            log.close()
        self._wait_for_port()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if Prosody has not exited within a few seconds.

        Without mod_posix Prosody installs no signal handlers, so SIGTERM ends it at once:
        clients see their TCP connection drop, as in a server crash.
        """
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(_STOP_TIMEOUT)

    def restart(self) -> None:
        """Stop and start again on the same port with the same accounts."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop, and remove the directory if this object created it."""
        self.stop()
        if self._owns_directory:
            shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self) -> Prosody:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- accounts -----------------------------------------------------------

    def register(self, username: str, password: str, domain: str | None = None) -> str:
        """Create (or overwrite) an account and return its bare JID. Works while running."""
        domain = domain or self.domain
        if domain not in {d.domain for d in self._domains}:
            raise ProsodyError(f"{domain} is not a VirtualHost of this Prosody")
        if not self._prepared:
            self._prepare()
        username = username.lower()  # nodeprep, for the ASCII names tests use
        record = scram_sha1_credentials(password, str(uuid.uuid4()))
        body = "".join(f"\t[{_lua_string(k)}] = {_lua_value(v)};\n" for k, v in record.items())
        accounts = self.data_dir / _encode_path_part(domain) / "accounts"
        self._make_dirs(accounts)
        target = accounts / f"{_encode_path_part(username)}.dat"
        staging = accounts / f".{_encode_path_part(username)}.{uuid.uuid4().hex}.tmp"
        staging.write_text(f"return {{\n{body}}};\n")
        self._chown(staging)
        staging.replace(target)  # atomic: a login never reads half a file
        return f"{username}@{domain}"

    # -- internals ----------------------------------------------------------

    @staticmethod
    def _run_as_user() -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        try:
            return pwd.getpwnam(PROSODY_USER)
        except KeyError as error:
            raise ProsodyError(
                f"running as root needs the '{PROSODY_USER}' user (apt install prosody)"
            ) from error

    def _reachable(self, path: Path) -> bool:
        """Whether the unprivileged user can traverse every existing ancestor of ``path``."""
        if self._user is None:
            return True
        for ancestor in [path, *path.parents]:
            if not ancestor.exists():
                continue
            st = ancestor.stat()
            if st.st_uid == self._user.pw_uid:
                ok = bool(st.st_mode & stat.S_IXUSR)
            elif st.st_gid == self._user.pw_gid:
                ok = bool(st.st_mode & stat.S_IXGRP)
            else:
                ok = bool(st.st_mode & stat.S_IXOTH)
            if not ok:
                return False
        return True

    def _user_args(self) -> dict[str, Any]:
        # Popen drops privileges itself: `runuser` would sit between us and Prosody and turn
        # every SIGTERM into a fixed two-second wait before its own SIGKILL.
        if self._user is None:
            return {}
        home = self._user.pw_dir
        return {
            "user": self._user.pw_uid,
            "group": self._user.pw_gid,
            "extra_groups": [],
            "env": {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LANG": "C.UTF-8"},
        }

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    def _make_dirs(self, path: Path) -> None:
        missing = []
        current = path
        while not current.exists():
            missing.append(current)
            current = current.parent
        for directory in reversed(missing):
            directory.mkdir(mode=0o750)
            self._chown(directory)

    def _prepare(self) -> None:
        if shutil.which(PROSODY_BIN) is None:
            raise ProsodyError("prosody is not installed (apt install prosody)")
        self._directory.mkdir(parents=True, exist_ok=True)
        self._directory.chmod(0o755)  # the CA certificate and config are for everyone to read
        self._chown(self._directory)
        self._make_dirs(self.data_dir)
        certs = self._directory / "certs"
        if not (certs / "server.crt").exists():
            self._make_certificates(certs)
        self.config_file.write_text(self._render_config())
        self.log_file.touch()
        for path in (self.config_file, self.log_file):
            self._chown(path)
        self._prepared = True

    def _make_certificates(self, certs: Path) -> None:
        """A throwaway CA and a server certificate for every domain, host name and 127.0.0.1."""
        certs.mkdir(parents=True, exist_ok=True)
        names = [f"DNS:{name}" for d in self._domains for name in (d.domain, d.muc_domain)]
        names.append(f"IP:{self._host}")
        ca_key, ca_crt = certs / "ca.key", certs / "ca.crt"
        key, csr, crt, ext = (
            certs / "server.key",
            certs / "server.csr",
            certs / "server.crt",
            certs / "server.ext",
        )
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        _openssl(
            "req", "-x509", *ec, "-keyout", ca_key, "-out", ca_crt, "-days", "30",
            "-subj", "/CN=jibri-sandbox test CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip
        _openssl("req", "-new", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN={self.domain}")
        ext.write_text(
            f"subjectAltName={','.join(names)}\n"
            "basicConstraints=CA:FALSE\n"
            "keyUsage=digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
        )
        _openssl(
            "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
            "-out", crt, "-days", "30", "-extfile", ext,
        )  # fmt: skip
        for path in certs.iterdir():
            path.chmod(0o640 if path.suffix == ".key" else 0o644)
            self._chown(path)
        self._chown(certs)

    def _render_config(self) -> str:
        certs = self._directory / "certs"
        q = _lua_string
        lines = [
            "-- Written by jibri_sandbox.prosody; regenerated on every start.",
            "daemonize = false",
            f"pidfile = {q(str(self._directory / 'prosody.pid'))}",
            f"data_path = {q(str(self.data_dir))}",
            f"certificates = {q(str(certs))}",
            f"log = {{ {{ levels = {{ min = {q(self._log_level)} }}, to = 'file', "
            f"filename = {q(str(self.log_file))} }} }}",
            "plugin_paths = {}",
            # No 'limits' (it throttles c2s reads, which hurts 100+ clients on loopback),
            # no 'posix' (daemonizing, pid files, setuid: we supervise the process ourselves).
            'modules_enabled = { "roster", "saslauth", "tls", "disco", "ping", "presence", "time", "version" }',
            'modules_disabled = { "posix", "s2s", "limits", "offline", "http", "bosh", "websocket" }',
            'authentication = "internal_hashed"',
            'storage = "internal"',
            "allow_registration = false",
            "c2s_require_encryption = true",
            "s2s_require_encryption = true",
            "c2s_stanza_size_limit = 1024 * 1024",
            f"interfaces = {{ {q(self._host)} }}",
            f"c2s_interfaces = {{ {q(self._host)} }}",
            f"c2s_ports = {{ {self.port} }}",
            "c2s_direct_tls_ports = {}",
            "legacy_ssl_ports = {}",
            "s2s_ports = {}",
            "s2s_direct_tls_ports = {}",
            "http_ports = {}",
            "https_ports = {}",
            "component_ports = {}",
            "proxy65_ports = {}",
            f"ssl = {{ key = {q(str(certs / 'server.key'))}, certificate = {q(str(certs / 'server.crt'))} }}",
            "",
        ]
        for d in self._domains:
            lines += [
                f"VirtualHost {q(d.domain)}",
                "",
                f"Component {q(d.muc_domain)} {q('muc')}",
                "    muc_room_locking = false",
                # Non-anonymous rooms: the controller sees each Jibri's real JID.
                "    muc_room_default_public_jids = true",
                "    muc_room_default_public = true",
                "    restrict_room_creation = false",
                "    muc_room_default_history_length = 0",
                "    max_history_messages = 0",
                "",
            ]
        return "\n".join(lines)

    def _wait_for_port(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        delay = 0.01
        while True:
            process = self._process
            if process is None or process.poll() is not None:
                raise ProsodyError(f"prosody exited while starting; see {self.log_file}:\n{self._log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection((self._host, self.port), timeout=1):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise ProsodyError(
                    f"prosody did not listen on {self._host}:{self.port} in {_START_TIMEOUT} s"
                )
            time.sleep(delay)  # polling a condition: the port, with a short back-off
            delay = min(delay * 2, 0.2)

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _lua_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return _lua_string(str(value))


def _openssl(*args: object) -> None:
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, check=False)
    if result.returncode != 0:
        raise ProsodyError(f"openssl {args[0]} failed: {result.stderr.decode(errors='replace').strip()}")
