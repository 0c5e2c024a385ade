// Tiling: an image embedded in overlapping tiles, their feature grids stitched into one grid over
// the whole image (docs/results.md, "Resolution and tiling"). One shared bank scores the stitched
// grid, so everything after the embedding (k-NN, maps, calibration, update) is unchanged.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "core/pipeline/patch_features.h"

namespace rp {

// One tile along one axis, in pixels of the resized image.
struct TileSpan {
  int64_t origin = 0;
  int64_t size = 0;
};

// Tiles covering [0, length): `tile` pixels each with at least about `overlap` shared between
// neighbours, origins multiples of `align` (the backbone's coarsest stride, so that every tap's
// cells line up with the whole image's), spread evenly; the last tile ends at `length` and may be
// up to align - 1 pixels longer than `tile`. One tile (the whole axis) when length <= tile.
std::vector<TileSpan> planTileSpans(int64_t length, int64_t tile, int64_t overlap, int64_t align);

// Which cells of each tile the stitched grid takes, along one axis. Tile i covers the stitched
// cells [offsets[i], offsets[i] + counts[i]); a cell shared by two tiles comes from the one whose
// border is farther (the boundary sits in the middle of their overlap), so no stitched cell sees
// a tile border that the whole image does not have. Returns [from, to) in each tile's own cells;
// the kept ranges tile the stitched axis [0, offsets.back() + counts.back()) exactly.
struct KeptCells {
  int64_t from = 0;
  int64_t to = 0;
};
std::vector<KeptCells> keptTileCells(const std::vector<int64_t>& offsets, const std::vector<int64_t>& counts);

// How an engine tiles: tile size and overlap in pixels, the backbone's finest stride (one cell of
// the grid) and coarsest stride (tile origins are multiples of it).
struct TileGeometry {
  int64_t size = 0, overlap = 0;
  int64_t cell = 8, align = 32;
};

// [n, 3, th, tw] tiles -> [n, l, D] patch features and their grid (the backbone and aggregation).
using EmbedTilesFn = std::function<torch::Tensor(const torch::Tensor& tiles, PatchGrid* grid)>;

// x: [3, h, w] -> [1, L, D]: the tiles of x embedded (those of one shape as one call when
// `batchTiles`, else one at a time) and stitched by keptTileCells into the grid of the whole
// image (*grid).
torch::Tensor stitchTiles(const torch::Tensor& x, const TileGeometry& tiles, bool batchTiles, const EmbedTilesFn& embed,
                          PatchGrid* grid);

}  // namespace rp
