"""Labs: a labgrid place as a bench (labgrid's client API), and the GSMTAP listener that
merges SIM traffic sniffed on the module's card interface (a SIMtrace2) into the record."""


class LabError(Exception):
    """A lab resource cannot be had (a place, a sniffer address); the message is one line naming it."""
