"""The network side of TR 33.812: VNO, RO (ICF/DRF/DPF), SHO, PVA, IVF, CCIF, M2MES and their crypto core."""
