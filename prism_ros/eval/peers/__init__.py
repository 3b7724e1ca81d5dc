"""Peer systems ``prism-ros bench --peer NAME`` runs on the same frames as PRISM.

Each peer is a module with ``MODULE`` (the package it needs), ``INSTALL_HINT`` and a worker ``spec -> result``.
"""

from typing import Any, Callable, Dict, Tuple

from prism_ros.eval.peers import open3d_peer

__all__ = ["PEERS", "PEER_WORKERS"]

#: peer name -> (module to import, install hint)
PEERS: Dict[str, Tuple[str, str]] = {"open3d": (open3d_peer.MODULE, open3d_peer.INSTALL_HINT)}
#: peer name -> its worker
PEER_WORKERS: Dict[str, Callable[[Dict[str, Any]], Dict[str, Any]]] = {"open3d": open3d_peer.run_open3d}
