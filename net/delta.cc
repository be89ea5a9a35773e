// delta.cc: zstd with the base chunk as prefix (delta.h).
#include "net/delta.h"

#include <memory>

#include <zstd.h>

#include "engine/assert.h"

namespace cascadefs::net {
namespace {

struct CCtxFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DCtxFree {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

}  // namespace

std::string EncodeDelta(std::string_view base, std::string_view data, int level) {
  CFS_ASSERT(level >= 1 && level <= 19);
  std::unique_ptr<ZSTD_CCtx, CCtxFree> cctx(ZSTD_createCCtx());
  CFS_ASSERT(cctx != nullptr);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_contentSizeFlag, 1);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 0);  // the chunk's name is the check
  ZSTD_CCtx_refPrefix(cctx.get(), base.data(), base.size());
  std::string out(ZSTD_compressBound(data.size()), '\0');
  const std::size_t size =
      ZSTD_compress2(cctx.get(), out.data(), out.size(), data.data(), data.size());
  CFS_ASSERT(!ZSTD_isError(size));
  out.resize(size);
  return out;
}

Result<std::string> DecodeDelta(std::string_view base, std::string_view delta,
                                std::size_t size_max) {
  const unsigned long long content = ZSTD_getFrameContentSize(delta.data(), delta.size());
  if (content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN) {
    return Status::InvalidArgument("delta: not a zstd frame with its content size");
  }
  if (content > size_max) {
    return Status::InvalidArgument("delta: content of " + std::to_string(content) +
                                   " bytes is over " + std::to_string(size_max));
  }
  const std::size_t frame = ZSTD_findFrameCompressedSize(delta.data(), delta.size());
  if (ZSTD_isError(frame) || frame != delta.size()) {
    return Status::InvalidArgument("delta: not exactly one zstd frame");
  }
  std::unique_ptr<ZSTD_DCtx, DCtxFree> dctx(ZSTD_createDCtx());
  if (dctx == nullptr) return Status::IOError("delta: out of memory");
  // A frame's window never needs more than the base and the chunk: bounded by size_max twice.
  ZSTD_DCtx_setParameter(dctx.get(), ZSTD_d_windowLogMax, 27);
  ZSTD_DCtx_refPrefix(dctx.get(), base.data(), base.size());
  std::string out(static_cast<std::size_t>(content), '\0');
  const std::size_t got =
      ZSTD_decompressDCtx(dctx.get(), out.data(), out.size(), delta.data(), delta.size());
  if (ZSTD_isError(got) || got != out.size()) {
    return Status::InvalidArgument(std::string("delta: does not decode against its base: ") +
                                   (ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short"));
  }
  return out;
}

}  // namespace cascadefs::net
