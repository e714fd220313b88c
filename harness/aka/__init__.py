"""3GPP AKA: Milenage (TS 35.206) and the AuC's SQN handling (TS 33.102 Annex C)."""
