"""The roof: the ``tether`` command and ``tether up``'s supervisor.

The only package that imports all the others (``tether``, ``mosquitto``, ``broker_bridge``,
``devices``, ``ui_gateway``); none of them imports it. Its flags are derived from the settings
dataclasses of those packages (``tether_cli.flags``), and it is where process-wide choices are
made: logging, log redaction, the paho tuning (``tether_cli.paho_tuning``).
"""
