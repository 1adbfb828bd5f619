"""``make acceptance``: the whole stack under load and production's faults (see :mod:`acceptance.run`)."""
