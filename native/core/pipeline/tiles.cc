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

torch::Tensor stitchTiles(const torch::Tensor& x, const TileGeometry& tiles, bool batchTiles, const EmbedTilesFn& embed,
                          PatchGrid* grid) {
  const int64_t cell = tiles.cell, align = tiles.align;
  RP_CHECK(align % cell == 0, Backbone, "tiling needs the backbone's strides to divide each other (" << cell << ", " << align << ")");
  const auto ys = planTileSpans(x.size(1), tiles.size, tiles.overlap, align);
  const auto xs = planTileSpans(x.size(2), tiles.size, tiles.overlap, align);
  const size_t count = ys.size() * xs.size();  // row-major
  auto spanY = [&](size_t t) { return ys[t / xs.size()]; };
  auto spanX = [&](size_t t) { return xs[t % xs.size()]; };
  std::vector<torch::Tensor> features(count);  // [th', tw', D] per tile
  std::vector<PatchGrid> grids(count);
  for (size_t t = 0; t < count; ++t) {
    if (features[t].defined()) continue;
    std::vector<size_t> same = {t};
    for (size_t u = t + 1; batchTiles && u < count; ++u)
      if (!features[u].defined() && spanY(u).size == spanY(t).size && spanX(u).size == spanX(t).size) same.push_back(u);
    std::vector<torch::Tensor> crops;
    for (size_t u : same) crops.push_back(x.narrow(1, spanY(u).origin, spanY(u).size).narrow(2, spanX(u).origin, spanX(u).size));
    PatchGrid g;
    auto f = embed(torch::stack(crops, 0), &g);  // [n, l, D]
    for (size_t k = 0; k < same.size(); ++k) {
      features[same[k]] = f[k].view({g.height, g.width, f.size(2)});
      grids[same[k]] = g;
    }
  }
  std::vector<int64_t> offY, cntY, offX, cntX;
  for (size_t i = 0; i < ys.size(); ++i) {
    offY.push_back(ys[i].origin / cell);
    cntY.push_back(grids[i * xs.size()].height);
  }
  for (size_t j = 0; j < xs.size(); ++j) {
    offX.push_back(xs[j].origin / cell);
    cntX.push_back(grids[j].width);
  }
  const auto keepY = keptTileCells(offY, cntY), keepX = keptTileCells(offX, cntX);
  grid->height = offY.back() + cntY.back();
  grid->width = offX.back() + cntX.back();
  auto out = torch::empty({grid->height, grid->width, features[0].size(2)}, features[0].options());
  for (size_t i = 0; i < ys.size(); ++i)
    for (size_t j = 0; j < xs.size(); ++j) {
      const auto& ky = keepY[i];
      const auto& kx = keepX[j];
      out.narrow(0, offY[i] + ky.from, ky.to - ky.from)
          .narrow(1, offX[j] + kx.from, kx.to - kx.from)
          .copy_(features[i * xs.size() + j].narrow(0, ky.from, ky.to - ky.from).narrow(1, kx.from, kx.to - kx.from));
    }
  return out.view({1, grid->height * grid->width, out.size(2)});
}

}  // namespace rp
