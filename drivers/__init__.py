"""Device drivers: TPM 2.0 (tpm2-pytss), UICC (pyscard or AT+CSIM), cellular module (pyserial).

Drivers know devices and nothing of TR 33.812.
"""
