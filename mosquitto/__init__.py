"""Tether's Mosquitto configuration: the config template, its renderer and the dynamic-security model."""
