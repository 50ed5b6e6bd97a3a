"""Make paho-mqtt's MQTT 5 property handling cheap: opt-in, by a program's entry point.

paho 2.x rebuilds its property tables (two dicts of 27 entries, with ``list.index`` calls) in
every ``Properties()``, and paho makes one for every MQTT 5 packet it receives. Under load that
was the gateway's largest single cost: 17 % of the time its threads held the GIL
(``bench/e2e_ws.py --profile``), and ``clear``, ``pack`` and ``__setattr__`` each scan the 27
names again. The tables are constant and paho only reads them, so every instance shares one
copy, and name lookups become dict lookups; properties whose values paho checks (or keeps as
lists) still go through paho's own ``__setattr__``. Behaviour is unchanged:
``tests/test_paho_tuning.py`` checks the encodings against the MQTT 5 specification.

It replaces methods of paho's ``Properties`` class for the whole process, so only a program may
choose it: ``tether``'s ``main`` and the benchmarks call :func:`share_property_tables`; no library
module does (importing ``devices`` or ``broker_bridge`` leaves paho as it is, so an application
that embeds ``DeviceAgent`` keeps its own paho). It relies on paho's internals, so it applies only
to the paho versions it was checked against, and logs a line and leaves paho alone otherwise.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import paho.mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers

log = logging.getLogger(__name__)

# The paho releases whose Properties this was checked against (tests/test_paho_tuning.py).
CHECKED_VERSIONS = frozenset({"2.2.0"})

_lock = threading.Lock()
_installed = False

# Properties paho lets appear more than once (kept as lists), and those whose values it checks.
_REPEATED = frozenset({11, 38})
_CHECKED_OR_REPEATED = _REPEATED | {1, 23, 25, 33, 34, 35, 39}


def share_property_tables(paho_version: str = paho.mqtt.__version__) -> bool:
    """Idempotent and process-wide: affects every paho client in this process.

    Returns whether the tables are shared; an unchecked ``paho_version`` is left alone.
    """
    global _installed
    if paho_version not in CHECKED_VERSIONS:
        log.info(
            "paho-mqtt %s is not one the property tuning was checked against (%s): not applied",
            paho_version,
            ", ".join(sorted(CHECKED_VERSIONS)),
        )
        return False
    with _lock:
        if _installed:
            return True
        template = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        tables = {
            "types": template.types,
            "names": template.names,
            "properties": template.properties,
        }
        idents = {name.replace(" ", ""): ident for name, ident in template.names.items()}
        paho_setattr = Properties.__setattr__

        def __init__(self: Properties, packetType: int) -> None:
            object.__setattr__(self, "packetType", packetType)
            for key, value in tables.items():
                object.__setattr__(self, key, value)

        def getIdentFromName(self: Properties, compressedName: str) -> int:
            return idents.get(compressedName, -1)

        def __setattr__(self: Properties, name: str, value: Any) -> None:
            ident = idents.get(name.replace(" ", ""))
            if (
                ident is None
                or ident in _CHECKED_OR_REPEATED
                or self.packetType not in self.properties[ident][1]
            ):
                paho_setattr(self, name, value)  # type: ignore[no-untyped-call]  # paho's checks
            else:
                object.__setattr__(self, name.replace(" ", ""), value)

        def clear(self: Properties) -> None:
            for key in [k for k in self.__dict__ if k in idents]:
                object.__delattr__(self, key)

        def pack(self: Properties) -> bytes:
            # paho writes properties in the order of its name table, which is identifier order.
            present = sorted((idents[k], v) for k, v in self.__dict__.items() if k in idents)
            buffer = b""
            for ident, value in present:
                kind = self.properties[ident][0]
                for item in value if ident in _REPEATED else (value,):
                    buffer += self.writeProperty(ident, kind, item)  # type: ignore[no-untyped-call]
            length: bytes = VariableByteIntegers.encode(len(buffer))  # type: ignore[no-untyped-call]
            return length + buffer

        patched: Any = Properties
        patched.__init__ = __init__
        patched.getIdentFromName = getIdentFromName
        patched.__setattr__ = __setattr__
        patched.clear = clear
        patched.pack = pack
        _installed = True
        return True


def is_applied() -> bool:
    """Whether this process's paho ``Properties`` carry the shared tables."""
    return Properties.__init__.__module__ == __name__
