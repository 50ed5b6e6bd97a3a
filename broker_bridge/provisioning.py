"""Provision and revoke devices: broker credentials (dynamic security) and the store, kept in step.

The broker side is changed first and undone if the store then refuses, so a device never has
credentials the store does not know about, and never appears in the store without credentials.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from broker_bridge.dynsec_admin import DynsecAdmin, DynsecError
from broker_bridge.errors import Conflict, Unavailable, UnknownDevice
from broker_bridge.store import jobs
from broker_bridge.store.queries import get_device
from broker_bridge.store.records import Record
from broker_bridge.store.shard import StoreUnavailable
from broker_bridge.store.sharded import ShardedStore
from tether.credentials import new_secret
from tether.protocol import validate_device_id

log = logging.getLogger(__name__)


class Provisioner:
    def __init__(
        self,
        store: ShardedStore,
        host: str,
        port: int,
        username: str,
        password: str,
        prefix: str,
        *,
        clear_status: Callable[[str], None] = lambda device_id: None,
        watch: Callable[[str], None] = lambda device_id: None,
    ) -> None:
        """``watch``: called with a new device's id before its credentials are returned, so its
        reports reach this owner from its first connect."""
        self.store = store
        self._clear_status = clear_status
        self._watch = watch
        self._admin_args = (host, port, username, password)
        self._prefix = prefix
        self._admin: DynsecAdmin | None = None
        self._lock = threading.Lock()  # one dynsec conversation at a time

    def _with_admin(self) -> DynsecAdmin:
        if self._admin is None:
            host, port, username, password = self._admin_args
            admin = DynsecAdmin(host, port, username, password, prefix=self._prefix)
            admin.open()
            self._admin = admin
        return self._admin

    def _reset_admin(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def provision(self, device_id: str) -> tuple[Record, str]:
        """Create the device; returns its record and its password (shown once, never stored)."""
        validate_device_id(device_id)
        if self.store.read(
            self.store.shard_of(device_id), lambda c: get_device(c, device_id)
        ).result():
            raise Conflict(f"device {device_id!r} already exists")
        password = new_secret()
        username = device_id
        with self._lock:
            try:
                admin = self._with_admin()
                try:
                    admin.create_device(device_id, username, password)
                except DynsecError as exc:
                    if not exc.already_exists:
                        raise
                    # Left over from an earlier attempt the store never recorded: replace it.
                    admin.delete_device(device_id, username)
                    admin.create_device(device_id, username, password)
            except (ConnectionError, TimeoutError, DynsecError) as exc:
                self._reset_admin()
                raise Unavailable(f"the broker could not create the credentials: {exc}") from exc
            try:
                record = self.store.write(
                    device_id,
                    lambda tx: jobs.create_device(tx, device_id, username, datetime.now(UTC)),
                ).result()
            except BaseException as exc:
                self._undo(device_id, username)
                if isinstance(exc, StoreUnavailable):
                    raise Unavailable(str(exc)) from exc
                raise
        self._watch(device_id)
        return record, password

    def rotate(self, device_id: str) -> tuple[Record, str]:
        """A new password for an existing device. The broker drops the device's connection (it
        logged in with the old one), and its retained ``online`` is cleared so that nobody,
        after a restart either, takes it for connected until it logs in with the new one. Its
        commands and history stay; pending ones wait for it."""
        validate_device_id(device_id)
        record = self.store.read(
            self.store.shard_of(device_id), lambda c: get_device(c, device_id)
        ).result()
        if record is None:
            raise UnknownDevice(f"no device {device_id!r}")
        password = new_secret()
        with self._lock:
            try:
                self._with_admin().set_password(record["username"], password)
            except (ConnectionError, TimeoutError, DynsecError) as exc:
                self._reset_admin()
                raise Unavailable(f"the broker could not change the password: {exc}") from exc
        self._clear_status(device_id)
        try:  # the broker dropped it, and a kicked client leaves no Last Will
            change = self.store.write(
                device_id,
                lambda tx: jobs.update_presence(tx, device_id, False, None, datetime.now(UTC)),
            ).result()
        except StoreUnavailable as exc:
            raise Unavailable(str(exc)) from exc
        return change.record or record, password

    def _undo(self, device_id: str, username: str) -> None:
        try:
            self._with_admin().delete_device(device_id, username)
        except Exception:
            log.exception(
                "could not remove the credentials of %s after a failed provision", device_id
            )

    def revoke(self, device_id: str) -> Record:
        """Mark the device revoked in the store, then delete its credentials (which kicks it)."""
        validate_device_id(device_id)
        try:
            record = self.store.write(
                device_id, lambda tx: jobs.revoke_device(tx, device_id, datetime.now(UTC))
            ).result()
        except StoreUnavailable as exc:
            raise Unavailable(str(exc)) from exc
        with self._lock:
            try:
                self._with_admin().delete_device(device_id, record["username"])
            except DynsecError as exc:
                if not exc.not_found:
                    raise Unavailable(
                        f"the broker could not delete the credentials: {exc}"
                    ) from exc
            except (ConnectionError, TimeoutError) as exc:
                self._reset_admin()
                raise Unavailable(f"the broker could not delete the credentials: {exc}") from exc
        self._clear_status(device_id)  # the kicked device leaves no Last Will
        return record

    def close(self) -> None:
        with self._lock:
            self._reset_admin()
