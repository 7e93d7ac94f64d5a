"""Who may talk to the sidecar: the peer's uid and the socket's location.

Why a module of its own: both sides enforce the same trust rules. Each checks the peer's uid
with ``SO_PEERCRED`` and refuses another user's process (:class:`SidecarAuthError`); the socket
is created 0600, and its directory must not be writable by other users unless it is sticky
(like ``/tmp``) and the socket file is ours (:func:`check_socket_location`).
"""

from __future__ import annotations

import os
import socket
import stat
import struct
from pathlib import Path

from edge_sdk.errors import SidecarAuthError, SidecarError

_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes on Linux, NUL included
_UCRED = struct.Struct("iII")  # Linux struct ucred: pid_t pid, uid_t uid, gid_t gid


def peer_uid(sock: socket.socket) -> int | None:
    """The connected peer's effective uid, from the kernel (``SO_PEERCRED``).

    Why: the uid is what the kernel recorded when the peer called ``connect`` or ``listen``,
    so it cannot be forged by what the peer sends. None where the OS has no ``SO_PEERCRED``
    (not Linux); there only the socket file's mode and the directory rule protect the peers.
    """
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    _pid, uid, _gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, option, _UCRED.size))
    return uid


def check_peer_uid(peer: int, own: int, *, role: str = "peer") -> None:
    """Refuse a peer (``role``: "server" or "client") that runs as another user.

    Raises:
        SidecarAuthError: ``peer != own``.
    """
    if peer != own:
        raise SidecarAuthError(
            f"the sidecar {role} runs as uid {peer}, not as this user (uid {own}): refused, "
            "only the same user's processes may talk to the workspace sidecar"
        )


def check_peer(sock: socket.socket, role: str) -> None:
    """Refuse a connected peer of another user (no-op where the OS has no SO_PEERCRED)."""
    uid = peer_uid(sock)
    if uid is not None:
        check_peer_uid(uid, os.geteuid(), role=role)


def check_socket_location(path: str | os.PathLike[str]) -> None:
    """Refuse a socket path another user could have planted or could replace.

    Why: whoever can write the socket's directory can swap the socket for their own and read
    every request. The directory must belong to this user or root; if anyone else may write it
    (world-writable, or group-writable by a group other than ours) it must be sticky, like
    ``/tmp``, so others cannot remove our file, and an existing socket file there must be ours.
    A missing directory or socket passes here (``connect``/``bind`` report those).

    Raises:
        SidecarAuthError: the directory or the socket file fails these rules.
    """
    path = Path(path)
    directory = path.parent
    uid = os.geteuid()
    try:
        info = directory.stat()
    except OSError:
        return
    if info.st_uid not in (uid, 0):
        raise SidecarAuthError(
            f"socket directory {directory} belongs to uid {info.st_uid}, who could replace "
            "the socket: use a directory of your own (mode 0700)"
        )
    if info.st_mode & stat.S_IWOTH:
        writers = "every user"
    elif info.st_mode & stat.S_IWGRP and info.st_gid != os.getegid():
        writers = f"group {info.st_gid}"
    else:
        return
    if not info.st_mode & stat.S_ISVTX:
        raise SidecarAuthError(
            f"socket directory {directory} is writable by {writers} and not sticky, so another "
            "user could replace the socket: use a private directory (mode 0700)"
        )
    try:
        owner = path.lstat().st_uid
    except OSError:
        return
    if owner != uid:
        raise SidecarAuthError(
            f"socket {path} in the shared directory {directory} belongs to uid {owner}, not to "
            f"this user (uid {uid}): refused"
        )


def check_socket_path(path: Path) -> None:
    """Refuse a socket path too long for ``sun_path`` (bind/connect would fail obscurely)."""
    if len(os.fsencode(str(path))) > _SOCKET_PATH_MAX:
        raise SidecarError(
            f"socket path {path} is longer than {_SOCKET_PATH_MAX} bytes (a Unix socket limit)"
        )
