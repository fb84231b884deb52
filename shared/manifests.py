"""Gate records kept in the store, one file per batch, so that nothing a workflow passes grows with the export."""

from __future__ import annotations

from shared.artifacts import ArtifactStore
from shared.contracts import ArtifactRef, BatchRecord, GateManifest, GateRecord, gate_manifest_key


def write_gates(store: ArtifactStore, record: BatchRecord) -> ArtifactRef:
    """Keep one batch's gate records in the store (a retry writes the same file again)."""
    return store.write_model(gate_manifest_key(record.run_id, record.branch, record.number),
                             GateManifest(gates=record.gates))


def read_gates(store: ArtifactStore, run_id: str, branch: str, batches: int) -> list[GateRecord]:
    return [gate for number in range(batches)
            for gate in store.read_model(gate_manifest_key(run_id, branch, number), GateManifest).gates]


def accepted_outputs(gates: list[GateRecord]) -> list[ArtifactRef]:
    return [gate.accepted_output for gate in gates if gate.accepted_output is not None]
