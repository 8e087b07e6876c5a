"""Pure decisions of the training-data reader: units of work and how readers split
them, the seeded order, positions to resume from, the SQL of one unit, and batches.

No I/O here; ``mlscale.stores.training`` reads the units these modules describe.
"""

from .batch import Batch
from .columns import Column
from .position import Position
from .units import Piece, Split, Unit, plan_units, reader_units

__all__ = ["Batch", "Column", "Piece", "Position", "Split", "Unit", "plan_units", "reader_units"]
