"""mcim-hil: a hardware-in-the-loop harness for 3GPP TR 33.812 MCIM provisioning."""

__version__ = "0.1.0"
