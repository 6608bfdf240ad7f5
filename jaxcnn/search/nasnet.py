"""The NASNet search space: a normal and a reduction cell of B = 5 blocks over 13 operations.

Each block ``b`` of a cell picks two inputs among the cell's inputs ``h`` (state 0), ``p``
(state 1) and the blocks before it (states ``2 .. b + 1``), and one operation of
:data:`~jaxcnn.models.nasnet.OPS` for each; the block is the sum of the two (Zoph et al. 2018,
Section 3 and Figure 3). The cell concatenates "the unused hidden states", the blocks that no
block reads, and the states whose ``concat`` choice is True: NASNet-A's cells also concatenate
states they read (``p`` in the normal cell, block 1 in the reduction cell, Figure 4), so the
space has one such choice for each state that a block can read (in a reduction cell, blocks
only: its inputs are at twice the blocks' size). An architecture is 50 choices; each cell in
turn has, per block, ``{cell}_{b}_input_1``, ``_input_2`` (``2 + b`` options, the state
indices), ``_op_1``, ``_op_2`` (the 13 op names), then ``{cell}_concat_{s}`` (False, True) for
``s`` in ``h, p, 0 .. 3`` (normal) or ``0 .. 3`` (reduction; blocks by index)::

  arch = encode((NASNET_A_NORMAL, NASNET_A_REDUCTION))  # the genotypes of jaxcnn.models.nasnet
  normal, reduction = decode(arch)                      # back to the two Genotypes
  model = build(arch, num_classes=10)  # create_model("nasnet", normal_cell=normal, ...)

A ``concat`` choice of an unread block changes nothing (it is concatenated anyway), so
``decode`` is many-to-one there; ``encode`` sets those choices True. ``create_model("nasnet")``
is the NASNet skeleton (:class:`~jaxcnn.models.nasnet.NASNet`, mobile 4 @ 1056 by default) with
the cells as fields ``normal_cell`` and ``reduction_cell``; with NASNet-A's cells it is
``nasnet_a_mobile``.

References:
  Zoph et al. 2018, "Learning Transferable Architectures for Scalable Image Recognition" (CVPR),
  Section 3, Figures 3 and 4.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import numpy as np

from jaxcnn.models import create_model
from jaxcnn.models._common import register_model
from jaxcnn.models.nasnet import OPS, Genotype, NASNet, check_genotype
from jaxcnn.search.space import Space

NUM_BLOCKS = 5
CELLS = ("normal", "reduction")
FIELDS = ("input_1", "input_2", "op_1", "op_2")
# The states with a concat choice, by label: every state a block can read (block 4 cannot).
CONCAT = {"normal": {"h": 0, "p": 1, **{str(b): 2 + b for b in range(NUM_BLOCKS - 1)}},
          "reduction": {str(b): 2 + b for b in range(NUM_BLOCKS - 1)}}


def _choices() -> dict[str, tuple[Any, ...]]:
  choices = {}
  for cell in CELLS:
    for b in range(NUM_BLOCKS):
      for field in FIELDS:
        choices[f"{cell}_{b}_{field}"] = tuple(range(2 + b)) if field.startswith("input") else OPS
    choices.update({f"{cell}_concat_{label}": (False, True) for label in CONCAT[cell]})
  return choices


SPACE = Space(_choices())


def unread_blocks(blocks: Sequence[Sequence[tuple[str, int]]]) -> tuple[int, ...]:
  """The states of the blocks that no block reads (always concatenated)."""
  read = {i for pair in blocks for _, i in pair}
  return tuple(2 + b for b in range(len(blocks)) if 2 + b not in read)


def decode(arch: Any) -> tuple[Genotype, Genotype]:
  """int [50] option indices -> the ``(normal, reduction)`` genotypes (concat in state order)."""
  choice = SPACE.decode(arch)
  genotypes = []
  for cell in CELLS:
    blocks = tuple(tuple((choice[f"{cell}_{b}_op_{j}"], int(choice[f"{cell}_{b}_input_{j}"]))
                         for j in (1, 2)) for b in range(NUM_BLOCKS))
    kept = {s for label, s in CONCAT[cell].items() if choice[f"{cell}_concat_{label}"]}
    genotypes.append(Genotype(blocks, tuple(sorted(kept | set(unread_blocks(blocks))))))
  return genotypes[0], genotypes[1]


def encode(genotypes: tuple[Any, Any]) -> np.ndarray:
  """The ``(normal, reduction)`` genotypes -> int32 [50] option indices.

  Raises:
    ValueError for an invalid genotype, one without 5 blocks, or one that leaves a block unread
    and unconcatenated (the space concatenates every unread block).
  """
  if len(genotypes) != len(CELLS):
    raise ValueError(f"encode takes (normal, reduction) genotypes, got {len(genotypes)} items.")
  choice = {}
  for cell, genotype in zip(CELLS, genotypes):
    genotype = check_genotype(genotype, reduction=cell == "reduction")
    if len(genotype.blocks) != NUM_BLOCKS:
      raise ValueError(f"The {cell} cell has {len(genotype.blocks)} blocks; the space's have "
                       f"{NUM_BLOCKS}.")
    dropped = sorted(set(unread_blocks(genotype.blocks)) - set(genotype.concat))
    if dropped:
      raise ValueError(f"The {cell} cell neither reads nor concatenates state {dropped[0]} "
                       f"(concat {genotype.concat}); the space concatenates every unread block.")
    for b, pair in enumerate(genotype.blocks):
      for j, (op, i) in enumerate(pair, start=1):
        choice[f"{cell}_{b}_op_{j}"], choice[f"{cell}_{b}_input_{j}"] = op, i
    for label, s in CONCAT[cell].items():
      choice[f"{cell}_concat_{label}"] = s in genotype.concat
  return np.asarray(SPACE.encode(choice))


def build(arch: Any, **overrides: Any) -> nn.Module:
  """The NASNet of one architecture (int [50]), through the zoo:
  ``create_model("nasnet", normal_cell=..., reduction_cell=..., **overrides)``."""
  normal, reduction = decode(arch)
  return create_model("nasnet", normal_cell=normal, reduction_cell=reduction, **overrides)


nasnet = register_model(NASNet, name="nasnet", family="nasnet")
