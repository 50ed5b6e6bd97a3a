"""The device side of Tether: the device agent (paho-mqtt) and the fleet simulator."""
