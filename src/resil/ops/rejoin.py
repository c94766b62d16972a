"""`resil db rejoin RESOURCE UNIT`: make a fenced old primary a replica of the primary.

After a failover (or a switch run with ``--no-reverse``, or a dead switch finished by a
resolver) the old primary stays fenced and alone: the pair is one server, and the next
failure loses writes. Rejoin makes it a replica of the published primary again, after
checking the servers, never the control state alone:

1. The published primary really takes writes, and the server to rejoin is another one.
2. The server to rejoin is fenced first (MySQL ``read_only``; Redis the fence mark):
   nothing may write to it while it is compared, and a replica must not take writes.
3. **Errant writes.** It must have no write the primary never got. MySQL: every GTID it
   wrote itself must be in the primary's ``gtid_slave_pos`` or ``gtid_binlog_pos`` (a
   frozen primary that thawed after the failover commits what it held; so does a
   primary that lost its semi-sync replica). Redis: its replication history must be a
   prefix of the primary's (``master_replid2`` / ``second_repl_offset``), or it must be
   empty. Otherwise it refuses and names them: the writes are data; resil never
   discards them silently. Redis can be told to (``--discard-errant``: a full resync
   replaces its data); MySQL cannot (the rows stay in its tables: rebuild it from the
   primary, after saving what the errant transactions wrote).
4. Replication from the primary: MySQL GTID (``MASTER_USE_GTID = current_pos``), as a
   semi-sync replica when the primary is a semi-sync primary; Redis ``REPLICAOF``. It
   waits until the replica really replicates, and reports the server's error if not.

It holds the resource's lease while it acts: never at the same time as a switch, a
failover or another rejoin.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..config import Config
from ..control import ControlPlane
from ..errors import SwitchError
from ..state import issuer
from ..topology import Resource
from . import locks, truth
from .servers import Credentials, Server, database_resource, open_server, same_address


@dataclass
class Rejoin:
    """One run of ``resil db rejoin``."""

    config: Config
    plane: ControlPlane
    resource_name: str
    unit: str
    discard_errant: bool = False
    timeout: float = 10.0
    """Longest wait for the new replica to replicate."""
    out: Callable[[str], None] = print

    def run(self) -> str:
        """Rejoin; the summary line. Raises :class:`SwitchError` when it refuses."""
        resource = self._resource()
        state = truth.trusted_state(self.config, self.plane, issuer(), self.out)
        if resource.name in state.locks:
            lock = state.locks[resource.name]
            raise SwitchError(f"{resource.name} is locked by {lock.holder} ({lock.reason}): "
                              "a switch or failover is under way; rejoin after it")
        primary_unit = state.primary_unit(resource)
        if primary_unit == self.unit:
            raise SwitchError(f"{self.unit} is the published primary of {resource.name}: "
                              "there is nothing to rejoin it to")
        primary_ep = resource.endpoint_in(primary_unit or "")
        old_ep = resource.endpoint_in(self.unit)
        if primary_ep is None or old_ep is None:
            raise SwitchError(f"{resource.name}: no endpoint in unit "
                              f"{self.unit if old_ep is None else primary_unit}")
        holder = f"{issuer()}/rejoin"
        lease = locks.HolderLease(self.plane, resource.name, holder)
        lease.take()
        credentials = Credentials.of(resource)
        primary = old = None
        try:
            primary = open_server(resource, primary_ep, credentials)
            old = open_server(resource, old_ep, credentials)
            return self._rejoin(resource, primary, old, credentials)
        finally:
            for server in (primary, old):
                if server is not None:
                    server.close()
            lease.release()

    def _rejoin(self, resource: Resource, primary: Server, old: Server,
                credentials: Credentials) -> str:
        if not primary.writable():
            raise SwitchError(f"the published primary {primary.endpoint} does not accept "
                              "writes: `resil state reconcile` first, then rejoin")
        status = old.replication()
        if status["role"] == "replica" and status.get("running") \
                and same_address(status["source"], primary.endpoint):
            return f"{old.endpoint} already replicates from {primary.endpoint}"
        cut = old.fence_for_good()
        self.out(f"fenced {old.endpoint} (unit {self.unit}); {cut} client connection(s) cut")
        errant = old.errant_against(primary)
        if errant and not (self.discard_errant and resource.kind == "redis"):
            hint = ("rerun with --discard-errant to let a full resync replace its data"
                    if resource.kind == "redis" else
                    "save what they wrote, then rebuild this server from the primary")
            raise SwitchError(f"{old.endpoint} has writes the primary never got: {errant}. "
                              f"Not rejoined (it stays fenced); {hint}")
        if errant:
            self.out(f"discarding, as asked: {errant}")
        semi_sync = primary.semi_sync_primary()
        began = time.monotonic()
        position = primary.position()
        old.rejoin(primary.endpoint, credentials, semi_sync)
        failure = old.replicating(position, self.timeout)
        if failure:
            raise SwitchError(f"{old.endpoint} did not start replicating from "
                              f"{primary.endpoint}: {failure}")
        return (f"rejoined {resource.name}: {old.endpoint} (unit {self.unit}) replicates "
                f"from {primary.endpoint}{' (semi-sync)' if semi_sync else ''}, "
                f"{(time.monotonic() - began) * 1000:.0f} ms")

    def _resource(self) -> Resource:
        return database_resource(self.config, self.resource_name, self.unit)
