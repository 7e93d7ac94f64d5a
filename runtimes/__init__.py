"""Runtime backends behind one protocol, one registry and one selection policy."""

from runtimes.base import Backend, Session, available_backends, get_backend, register_backend
from runtimes.selection import Candidate, open_graph, rank_candidates

__all__ = [
    "Backend",
    "Candidate",
    "Session",
    "available_backends",
    "get_backend",
    "open_graph",
    "rank_candidates",
    "register_backend",
]
