"""Serializer hazards on the host side: strict-msgpack rehearsal and the stored-type scan.

:mod:`migrator.serde.strict` runs a version's reads under strict msgpack (and an
allowlist) and names what degrades (H-STRICT-MSGPACK); :mod:`migrator.serde.scan`
lists every type stored in a database (``scan-types``) and the allowlist that keeps
them loading. The worker halves are :mod:`migrator.worker.strict` and
:mod:`migrator.worker.op_scan_types`.
"""
