"""Key usage in the database (SPEC §4.9): `flush` copies the counters of
`apps.apikeys.gate` into `KeyUsage` / `KeyUsageIp` and prunes them; `answer` reads
them back, merged with what waits for a copy.
"""
