"""A fleet of M2MEs changing SHO at once (seed 004, issue 8): real benches and SIMULATED TREs,
sharded by M2ME over a process pool or a Dask cluster, with and without the IVF."""
