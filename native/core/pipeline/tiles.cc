#include "core/pipeline/tiles.h"

#include <algorithm>

#include "core/error.h"

namespace rp {

std::vector<TileSpan> planTileSpans(int64_t length, int64_t tile, int64_t overlap, int64_t align) {
  RP_CHECK(length > 0 && tile > 0 && align > 0 && overlap >= 0 && overlap < tile, InvalidOption,
           "tiles need size > overlap >= 0 (size " << tile << ", overlap " << overlap << ")");
  if (length <= tile) return {{0, length}};
  RP_CHECK(tile >= 2 * align, InvalidOption,
           "tile size " << tile << " is too small for this backbone (its coarsest stride is " << align
                        << "); use at least " << 2 * align);
  const int64_t step = tile - overlap;
  const int64_t n = 1 + (length - tile + step - 1) / step;  // enough tiles for steps of at most `step`
  const int64_t last = (length - tile) / align * align;      // the last origin, aligned
  std::vector<TileSpan> spans;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t origin = i == n - 1 ? last : (i * last / (n - 1)) / align * align;
    if (!spans.empty() && origin <= spans.back().origin) continue;
    spans.push_back({origin, tile});
  }
  spans.back().size = length - spans.back().origin;
  return spans;
}

std::vector<KeptCells> keptTileCells(const std::vector<int64_t>& offsets, const std::vector<int64_t>& counts) {
  const size_t n = offsets.size();
  RP_CHECK(n > 0 && counts.size() == n, Internal, "tile cells: " << n << " offsets, " << counts.size() << " counts");
  std::vector<KeptCells> kept(n);
  int64_t start = 0;  // the first stitched cell not yet taken
  for (size_t i = 0; i < n; ++i) {
    const int64_t end = offsets[i] + counts[i];
    // The boundary with the next tile: the middle of the cells both cover.
    int64_t stop = end;
    if (i + 1 < n) {
      RP_CHECK(offsets[i + 1] <= end, Internal, "tiles leave a gap at cell " << end);
      stop = std::max(start, (offsets[i + 1] + end) / 2);
    }
    kept[i] = {start - offsets[i], stop - offsets[i]};
    RP_CHECK(kept[i].from >= 0 && kept[i].to <= counts[i], Internal, "tile cells out of range");
    start = stop;
  }
  return kept;
}

}  // namespace rp
