"""The M2ME side: the software an M2M equipment runs (agent, TRE), joining the drivers to the network's messages."""
