"""CurveZMQ key pairs for remote clients: files like ssh's, in z85 text.

``llmos keygen NAME`` writes ``NAME.key`` (the secret key, mode 0600) and ``NAME.pub``
(the public key) under ``~/.config/llmos``. The daemon's operator copies ``NAME.pub``
into the daemon's ``authorized_keys`` directory; the client's identity on that daemon
is then ``key:NAME`` (the file's name there), with the role ``[security]`` gives it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import zmq
import zmq.utils.z85

from ..errors import ConfigError

#: Where ``llmos keygen`` writes by default.
DEFAULT_KEY_DIR = Path("~/.config/llmos")
#: A z85-encoded CurveZMQ key is 40 characters.
Z85_KEY_CHARS = 40


def generate_keypair(name: str, directory: str | os.PathLike[str] = DEFAULT_KEY_DIR) -> tuple[Path, Path]:
    """Write ``NAME.key`` (secret, 0600) and ``NAME.pub`` in ``directory``; returns both paths.

    Raises:
        ConfigError: a bad name, or the files exist (keys are never overwritten).
    """
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum() or name.startswith("."):
        raise ConfigError(f"key name must be letters, digits, '-', '_' and '.', not {name!r}")
    folder = Path(directory).expanduser()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    secret_path, public_path = folder / f"{name}.key", folder / f"{name}.pub"
    for path in (secret_path, public_path):
        if path.exists():
            raise ConfigError(f"{path} exists; keys are never overwritten (remove it first)")
    public, secret = zmq.curve_keypair()
    fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secret.decode() + "\n")
    public_path.write_text(public.decode() + "\n")
    return secret_path, public_path


def _z85(text: str, what: str) -> bytes:
    key = text.strip().encode()
    if len(key) != Z85_KEY_CHARS:
        raise ConfigError(f"{what} is not a z85 CurveZMQ key ({Z85_KEY_CHARS} characters)")
    return key


def load_secret_key(path: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """``(public, secret)`` z85 keys from a secret key file, which must be private (0600, ours).

    Raises:
        ConfigError: missing, unreadable, not private, or not a key.
    """
    path = Path(path).expanduser()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"secret key {path}: {exc.strerror}") from None
    with os.fdopen(fd) as fh:
        st = os.fstat(fh.fileno())
        if st.st_mode & 0o077 or st.st_uid != os.geteuid():
            raise ConfigError(f"secret key {path} must belong to us and be private (chmod 600)")
        secret = _z85(fh.read(), f"secret key {path}")
    try:
        return zmq.curve_public(secret), secret
    except zmq.ZMQError as exc:
        raise ConfigError(f"secret key {path}: {exc}") from None


def load_public_key(value: str | os.PathLike[str]) -> bytes:
    """A z85 public key given as the key itself or as the path of a ``.pub`` file.

    Raises:
        ConfigError: neither a key nor a readable key file.
    """
    text = os.fspath(value)
    if len(text) == Z85_KEY_CHARS and not os.path.exists(text):
        return _z85(text, "server key")
    try:
        return _z85(Path(text).expanduser().read_text(), f"public key file {text}")
    except OSError as exc:
        raise ConfigError(f"public key {text!r}: {exc.strerror}") from None


def load_authorized_keys(directory: str | os.PathLike[str]) -> dict[bytes, str]:
    """``{public key (32 raw bytes): name}`` from every ``NAME.pub`` file in ``directory``.

    Files that are not keys are skipped; a missing directory authorizes nobody.
    """
    folder = Path(directory).expanduser()
    keys: dict[bytes, str] = {}
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return keys
    for entry in entries:
        if entry.suffix != ".pub":
            continue
        try:
            st = entry.lstat()
            if not stat.S_ISREG(st.st_mode):
                continue
            key = _z85(entry.read_text(), str(entry))
            keys[zmq.utils.z85.decode(key)] = entry.stem
        except (OSError, ConfigError, ValueError):
            continue
    return keys
