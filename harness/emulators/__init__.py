"""Emulated bench devices that speak the real protocols: swtpm, a virtual UICC behind pcscd/vpcd, an AT modem on a pty.

Emulators share no code with the drivers, so each checks the other; only the
spec-pinned Milenage (mcim_hil.aka) is common.
"""
