"""A scripted chain for tests and benchmarks: hand-made blocks served the way the Fabric Gateway serves them."""

from __future__ import annotations

from typing import Any

from fabric_client.events import ChaincodeEventBlock
from fabric_client.gateway import ChainInfo


class ScriptedStream:
    def __init__(self, blocks: list[ChaincodeEventBlock]) -> None:
        self.blocks = blocks

    def __iter__(self):
        return iter(self.blocks)

    def close(self) -> None:
        pass


class ScriptedNetwork:
    """Serves the blocks from the checkpoint (or start block) on, like the gateway (which skips through the
    checkpoint's tx id: the projector drops those events itself), and a chain height: by default just past the
    last block; a lower one means the blocks above it were committed after the height was read."""

    def __init__(self, blocks: list[ChaincodeEventBlock], height: int | None = None) -> None:
        self.blocks = blocks
        self.height = height if height is not None else (blocks[-1].block_number + 1 if blocks else 0)
        self.opened = 0

    def chaincode_event_blocks(self, chaincode: str, *, checkpoint: Any = None,
                               start_block: int | None = None) -> ScriptedStream:
        self.opened += 1
        start = checkpoint.block_number if checkpoint else (start_block or 0)
        return ScriptedStream([b for b in self.blocks if b.block_number >= start])

    def chain_info(self, timeout: float | None = None) -> ChainInfo:
        return ChainInfo(self.height, b"", b"")
