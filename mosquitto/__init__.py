"""Tether's Mosquitto configuration: template, renderer and dynamic-security model."""
