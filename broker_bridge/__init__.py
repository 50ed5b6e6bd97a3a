"""The MQTT side of Tether: the bridge to the broker and the sharded command store."""
