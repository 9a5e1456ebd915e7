// Batch normalization's training step as two TensorFlow ops, for an input normalized on any one
// axis (`axis`), seen as (P, C, Q): the axes before the channels, the channels, the axes after.
// A channels-last input (Q = 1) is an (M, C) matrix whose rows are every position of every
// sample, and the passes run along its rows, every channel at once; otherwise (NCHW) each
// (p, c) is a plane of Q contiguous values of one channel, and the passes run plane by plane
// (small planes: as rows of every channel's plane in turn, or, in a few rows, channel by channel).
//
// NncardsBatchNormTraining: (x, gamma, beta, moving) -> (y, mean, variance), the statistics in
// float32, the variance as Keras 3's, the mean of the squared deviations from the mean (never
// E[x²] − E[x]²): each chunk of rows sums its squared deviations from its own mean while its rows
// are in the cache, and the chunks' sums are combined with their shift to the mean (Chan, Golub
// and LeVeque's update), as accurate as a second pass over the input, which it saves; the output
// in Keras 3's order of operations: k = gamma * rsqrt(variance + epsilon),
// y = x * k + (beta - mean * k). `moving` is empty, or the moving mean's and moving variance's
// resource handles (float32 variables of one value a channel): the op then updates them in place,
// under each variable's lock as TensorFlow's own update ops do, with Keras 3's arithmetic
// `moving * momentum + batch * batch_weight` (batch_weight: 1 - momentum, computed by the caller
// as Keras computes it), which saves a training step the dozen small ops of two separate updates.
// NncardsBatchNormTrainingGrad: (dy, x, gamma, mean, variance) -> (dx, dgamma, dbeta), the
// gradient of batch normalization written out: with xhat = (x - mean) * rsqrt(variance + epsilon),
// dbeta = sum(dy), dgamma = sum(dy * xhat) and
// dx = gamma * rsqrt(variance + epsilon) * (dy - (mean(dy) + xhat * mean(dy * xhat))).
//
// x and dy are float32 or float16 (converted to float32 row by row); everything is computed in
// float32. The rows (planes) are cut into chunks of about 64 kB that TensorFlow's CPU worker
// threads take in turn; each chunk sums its rows into a vector of its own (each tile of a plane
// sums its values into a number of its own), and these are added in a fixed order, so the
// results do not depend on the number of threads. The inner loops run over contiguous values
// (a row's channels, a plane's positions) and vectorize.
//
// nncards builds this file with the compiler of the machine that loads it (see
// batch_norm_op.py); it is built without floating-point contraction, so that every product and
// sum is rounded as TensorFlow's own ops round it.

#include <algorithm>
#include <array>
#include <atomic>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <thread>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#if defined(__F16C__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/resource_mgr.h"
#include "tensorflow/core/framework/resource_var.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace nncards {
namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

// --- float16 rows as float32 rows --------------------------------------------------------

void HalfToFloat(const Eigen::half* in, float* out, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(out + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i))));
#elif defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i))));
#endif
  for (; i < n; ++i) out[i] = static_cast<float>(in[i]);
}

// Rounds to the nearest float16, ties to even, as TensorFlow's cast does.
void FloatToHalf(const float* in, Eigen::half* out, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        _mm512_cvtps_ph(_mm512_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#elif defined(__F16C__)
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
  for (; i < n; ++i) out[i] = static_cast<Eigen::half>(in[i]);
}

constexpr int kRowsAtOnce = 4;  // rows a reduction adds together before adding them to its sums

// float16 channels converted at a time: the float32 values of the rows a pass reads at once stay
// in the L1 cache (whole rows of 1,024 channels did not: 2-D float16 steps took 10% longer).
constexpr int64_t kHalfTile = 256;

// A row's channels in tiles: body(first channel, width) for each. Whole rows of float32, which
// are read in place; tiles of kHalfTile channels of float16, which are converted.
template <typename T, typename Body>
void ForTiles(int64_t channels, const Body& body) {
  if constexpr (std::is_same<T, float>::value) {
    body(0, channels);
  } else {
    for (int64_t first = 0; first < channels; first += kHalfTile) body(first, std::min(kHalfTile, channels - first));
  }
}

// A chunk's rows [first_row, end_row), and of each the values [first_value, end_value).
struct Span {
  int64_t first_row, end_row, first_value, end_value;
  int64_t Rows() const { return end_row - first_row; }
  int64_t Width() const { return end_value - first_value; }
};

// Calls body(the tile's first value in the matrix, its first value in the band, width) for every
// tile (see ForTiles) of a chunk's rows of `row_values` values.
template <typename T, typename Body>
void ForChunkTiles(const Span& span, int64_t row_values, const Body& body) {
  for (int64_t r = span.first_row; r < span.end_row; ++r) {
    const int64_t start = r * row_values + span.first_value;
    ForTiles<T>(span.Width(), [&](int64_t c0, int64_t width) { body(start + c0, c0, width); });
  }
}

// The values of one tile (see ForTiles), at most.
template <typename T>
int64_t TileWidth(int64_t channels) {
  return std::is_same<T, float>::value ? channels : std::min(kHalfTile, channels);
}

// A buffer of float32 values for float16 tiles (not initialized: a tile is converted in before it
// is read), none for float32 rows.
template <typename T>
std::unique_ptr<float[]> ConversionBuffer(int64_t values) {
  return std::unique_ptr<float[]>(std::is_same<T, float>::value ? nullptr : new float[values]);
}

// Tiles of rows of T read as float32: float32 values are read in place, float16 values converted
// into buffers of the reader's own (one per row read at once, `slot`).
template <typename T>
class RowReader {
 public:
  explicit RowReader(int64_t channels)
      : width_(TileWidth<T>(channels)), buffer_(ConversionBuffer<T>(kRowsAtOnce * width_)) {}
  const float* operator()(const T* tile, int64_t width, int slot = 0) {
    if constexpr (std::is_same<T, float>::value) {
      return tile;
    } else {
      float* converted = buffer_.get() + slot * width_;
      HalfToFloat(tile, converted, width);
      return converted;
    }
  }

 private:
  int64_t width_;
  std::unique_ptr<float[]> buffer_;
};

// Copies `bytes` from `from` to `to` with non-temporal stores (past the caches, without reading
// the lines first), but for the partial 64-byte lines at either end. The stores are ordered with
// the thread's later ones by an sfence (see RowWriter).
void StreamBytes(const void* from, void* to, int64_t bytes) {
  const char* source = static_cast<const char*>(from);
  char* target = static_cast<char*>(to);
  const int64_t head = std::min<int64_t>(bytes, (64 - reinterpret_cast<std::uintptr_t>(target) % 64) % 64);
  std::memcpy(target, source, head);
  int64_t i = head;
#if defined(__AVX512F__)
  for (; i + 64 <= bytes; i += 64)
    _mm512_stream_si512(reinterpret_cast<__m512i*>(target + i), _mm512_loadu_si512(source + i));
#elif defined(__AVX__)
  for (; i + 32 <= bytes; i += 32)
    _mm256_stream_si256(reinterpret_cast<__m256i*>(target + i),
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(source + i)));
#endif
  std::memcpy(target + i, source + i, bytes - i);
}

// Tiles of rows of T (see ForTiles) written from float32. float32 rows are computed in place,
// or, streamed (an output too large for the caches to keep: see kStreamBytes), in a buffer then
// stored past the caches, which spares the memory the read of every line before it is written.
// float16 tiles are computed in a buffer, then rounded into place by `Finish` (streaming them
// measured slower).
template <typename T>
class RowWriter {
 public:
  RowWriter(int64_t channels, bool streamed)
      : streamed_(std::is_same<T, float>::value && streamed),
        buffer_(std::is_same<T, float>::value && !streamed_ ? nullptr : new float[TileWidth<T>(channels)]) {}
  ~RowWriter() {
#if defined(__SSE2__)
    if (streamed_) _mm_sfence();  // the streamed rows are written before whatever the thread does next
#endif
  }
  float* Start(T* tile) {
    if constexpr (std::is_same<T, float>::value) {
      if (!streamed_) return tile;
    }
    return buffer_.get();
  }
  void Finish(T* tile, int64_t width) {
    if constexpr (std::is_same<T, float>::value) {
      if (streamed_) StreamBytes(buffer_.get(), tile, width * sizeof(float));
    } else {
      FloatToHalf(buffer_.get(), tile, width);
    }
  }

 private:
  const bool streamed_;
  std::unique_ptr<float[]> buffer_;
};

// float32 outputs of at least this many bytes are streamed past the caches (RowWriter): a 3-D
// (64, 128, 256) step took 10-15% less time so, a 2-D (512, 1024) one, whose 2 MB the next
// layer would find in the cache, is not streamed.
constexpr int64_t kStreamBytes = 4 * 1024 * 1024;

// --- chunks of the (rows x values) matrix on TensorFlow's worker threads -------------------

constexpr int64_t kChunkBytes = 64 * 1024;  // rows per chunk: about this many bytes of input
constexpr int64_t kTakeValues = 128 * 1024;  // chunks a thread takes at once: at most about this many input values
constexpr int64_t kGroupRows = 64;          // rows summed apart before their sum joins the total

int64_t CeilDivide(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Chunks of about kChunkBytes of rows (every channel, or a band of grouped rows), for the
// threads. Each pass over the matrix runs every chunk once; the sums a chunk makes are its own and
// they are added in chunk order, so the results do not depend on which thread ran which chunk,
// or on how many did.
//
// The thread that runs the op takes chunks itself and asks TensorFlow's CPU worker threads to
// help: each thread takes the next chunks nobody has taken until none are left, some kTakeValues
// values of consecutive chunks at a time (taking costs the threads a shared counter, and each take
// starts a stream the CPU's prefetcher must find again: a 2-D step took 10-20% longer with a
// chunk a take). Values, not bytes: a float16 value costs about a float32 one's time. A helper that starts late (its core busy) finds fewer chunks or none, so the op
// never waits for a thread to start, only for the chunks already taken to end; on an idle
// machine the pass is shared. Near a pass's end a take shrinks to a share of the chunks left
// (a quarter, with one helper), down to one chunk, so that the threads end together rather than
// one waiting for the other's last full take: a 2-D (512, 1024) pass is only 4 to 8 full takes,
// and its step took 0.55 ms instead of 0.63 in float32, 0.54 instead of 0.58 in float16
// (interleaved in one process, idle second core). A pass of many takes (3-D, NHWC) changes only
// in its last few (their steps measured within 3% either way).
class Chunks {
 public:
  // A matrix of `rows` rows of `row_values` values, cut into bands of `band_values` values a row
  // (one band of whole rows but for grouped rows), each band into chunks of about kChunkBytes of
  // rows, `min_rows` rows at least however wide; `inputs`: the matrices a pass reads (of
  // `value_bytes` bytes a value). The chunks run band after band, each band's top to bottom.
  Chunks(OpKernelContext* context, int64_t rows, int64_t row_values, int64_t band_values, int64_t inputs,
         int64_t value_bytes, int64_t min_rows = 1)
      : workers_(context->device()->tensorflow_cpu_worker_threads()->workers),
        rows_(rows),
        values_(row_values),
        band_(std::max<int64_t>(1, band_values)) {
    height_ = std::max<int64_t>(min_rows, kChunkBytes / (band_ * inputs * value_bytes));
    blocks_ = CeilDivide(rows, height_);
    count_ = blocks_ * CeilDivide(values_, band_);
    per_take_ = std::max<int64_t>(1, kTakeValues / (height_ * band_ * inputs));
  }

  int64_t count() const { return count_; }
  // The rows and values of a chunk (a band's last chunk may have fewer rows, a row's last band fewer values).
  Span At(int64_t chunk) const {
    const int64_t band = chunk / blocks_, block = chunk % blocks_;
    return {block * height_, std::min(rows_, (block + 1) * height_), band * band_,
            std::min(values_, (band + 1) * band_)};
  }

  // Calls body(chunk, its Span) for every chunk, on this thread and the helpers.
  template <typename Body>
  void ForEach(const Body& body) const {
    const std::function<void(int64_t, int64_t)> run = [&](int64_t first, int64_t end) {
      for (int64_t chunk = first; chunk < end; ++chunk) body(chunk, At(chunk));
    };
    // Shared with the helpers, which may start after this pass (or this op) is over: they touch
    // `run` only after taking chunks, and the pass waits for every chunk taken.
    const int64_t helpers = std::min<int64_t>(workers_->NumThreads() - 1, CeilDivide(count_, per_take_) - 1);
    auto pass = std::make_shared<Pass>(count_, per_take_, 2 * (helpers + 1), &run);
    for (int64_t h = 0; h < helpers; ++h) workers_->Schedule([pass] { pass->Work(); });
    pass->Work();
    while (pass->done.load(std::memory_order_acquire) < count_) std::this_thread::yield();
  }

  // A buffer for `sums` vectors of sums per chunk, one a value of its rows (not initialized: each
  // chunk writes its own), and where a chunk's `sum`th vector is in it (a chunk's vectors follow
  // one another, as SumRows writes them).
  std::unique_ptr<float[]> Partial(int sums) const { return std::unique_ptr<float[]>(new float[count_ * sums * band_]); }
  float* Part(float* partial, int64_t chunk, int sums, int sum) const {
    return partial + chunk * sums * band_ + sum * At(chunk).Width();
  }

  // The chunks' `sum`th vectors of a Partial of `sums` vectors, added in chunk order into `total`
  // (a value of a row each).
  void Total(float* partial, int sums, int sum, float* total) const {
    std::fill(total, total + values_, 0.0f);
    for (int64_t chunk = 0; chunk < count_; ++chunk) {
      const Span span = At(chunk);
      const float* __restrict part = Part(partial, chunk, sums, sum);
      float* __restrict band_total = total + span.first_value;
      for (int64_t j = 0; j < span.Width(); ++j) band_total[j] += part[j];
    }
  }

 private:
  // The chunks of one pass: `next` the first nobody has taken, `done` how many have been run.
  struct Pass {
    Pass(int64_t count, int64_t per_take, int64_t share, const std::function<void(int64_t, int64_t)>* run)
        : count(count), per_take(per_take), share(share), run(run) {}
    // Takes per_take chunks at a time, or 1/share of those left when that is fewer (at least one).
    void Work() {
      int64_t first = next.load(std::memory_order_relaxed), size;
      for (;;) {
        do {
          if (first >= count) return;
          size = std::min(per_take, std::max<int64_t>(1, (count - first) / share));
        } while (!next.compare_exchange_weak(first, first + size, std::memory_order_relaxed));
        (*run)(first, first + size);
        done.fetch_add(size, std::memory_order_release);
        first = next.load(std::memory_order_relaxed);
      }
    }
    const int64_t count, per_take, share;
    const std::function<void(int64_t, int64_t)>* const run;
    std::atomic<int64_t> next{0}, done{0};
  };

  tensorflow::thread::ThreadPool* workers_;
  int64_t rows_, values_, band_, height_, blocks_, count_, per_take_;
};

// Adds rows [first, end) into `sums`, kSums vectors of `channels` sums one after the other.
// add_rows(n, r, group) adds the n rows from r (n a std::integral_constant: kRowsAtOnce, or 1 for
// the last few) into `group` (kSums vectors of `channels`): adding several rows together before
// adding them to the sums saves loads and stores of the sums. The rows are added by groups of
// kGroupRows, each summed apart before it joins the sums, so that a long sum's rounding errors stay
// those of short ones; the first group is summed in `sums` itself (0 + its sum is its sum).
template <int kSums, typename AddRows>
void SumRows(int64_t first, int64_t end, int64_t channels, float* sums, const AddRows& add_rows) {
  std::unique_ptr<float[]> later;  // the groups after the first, when there are any
  for (int64_t group_first = first; group_first < end; group_first += kGroupRows) {
    float* group = sums;
    if (group_first != first) {
      if (!later) later.reset(new float[kSums * channels]);
      group = later.get();
    }
    std::fill(group, group + kSums * channels, 0.0f);
    const int64_t group_end = std::min(end, group_first + kGroupRows);
    int64_t r = group_first;
    for (; r + kRowsAtOnce <= group_end; r += kRowsAtOnce)
      add_rows(std::integral_constant<int, kRowsAtOnce>(), r, group);
    for (; r < group_end; ++r) add_rows(std::integral_constant<int, 1>(), r, group);
    if (group != sums) {
      float* __restrict sum = sums;
      const float* __restrict part = group;
      for (int64_t c = 0; c < kSums * channels; ++c) sum[c] += part[c];
    }
  }
}

float InverseDeviation(float variance, float epsilon) { return 1.0f / std::sqrt(variance + epsilon); }

// --- planes of one channel (the channels not the last axis) --------------------------------

// A plane's values in tiles of at most this many: float32 tiles are read in place, float16 ones
// converted into a buffer of kHalfTile values (see RowReader), the two inputs of a backward tile
// and its output stay in the L1/L2 caches while the tile is read twice.
constexpr int64_t kFloatPlaneTile = 4096;

template <typename T>
int64_t PlaneTile(int64_t inner) {
  return std::min(inner, std::is_same<T, float>::value ? kFloatPlaneTile : kHalfTile);
}

// The (P, C, Q) view of an input: `planes` = P * C planes of `inner` = Q values, each cut into
// `tiles` tiles of `tile` values (the last one's may be fewer).
struct Planes {
  Planes(int64_t outer, int64_t channels, int64_t inner, int64_t tile)
      : outer(outer), channels(channels), inner(inner), tile(tile), tiles(CeilDivide(inner, tile)) {}
  int64_t Width(int64_t t) const { return std::min(tile, inner - t * tile); }
  // The chunks of planes for the threads: each plane a row, whole (`inputs`: see Chunks).
  Chunks Chunked(OpKernelContext* context, int64_t inputs, int64_t value_bytes) const {
    return Chunks(context, outer * channels, inner, inner, inputs, value_bytes);
  }
  // A buffer of two sums a tile (not initialized: each tile writes its own), for Total.
  std::unique_ptr<float[]> TileSums() const { return std::unique_ptr<float[]>(new float[outer * channels * tiles * 2]); }
  // Calls body(tile, channel, tile's first value, width) for every tile of planes [first, end);
  // `tile` counts the tiles of all planes, plane after plane.
  template <typename Body>
  void ForTiles(int64_t first, int64_t end, const Body& body) const {
    for (int64_t plane = first; plane < end; ++plane)
      for (int64_t t = 0; t < tiles; ++t) body(plane * tiles + t, plane % channels, plane * inner + t * tile, Width(t));
  }
  // term(a tile's `sums` values, its channel, its width) of every tile added into total[its
  // channel] in tile order; `values` holds `sums` values a tile, tile after tile.
  template <typename Term>
  void Total(const float* values, int sums, float* total, const Term& term) const {
    std::fill(total, total + channels, 0.0f);
    for (int64_t p = 0; p < outer; ++p)
      for (int64_t c = 0; c < channels; ++c)
        for (int64_t t = 0; t < tiles; ++t) total[c] += term(values + ((p * channels + c) * tiles + t) * sums, c, Width(t));
  }
  int64_t outer, channels, inner, tile, tiles;
};

constexpr int kLanes = 64;  // partial sums a tile's sum keeps: four 16-float vectors

// The sum of term(j) for j in [0, n): kLanes partial sums, one every kLanes values, then added
// pairwise. (A sum into one float could not vectorize without reordering its additions, which
// the build does not allow; these are as accurate, every partial sum short.)
template <int kLaneCount = kLanes, typename Term>
float LaneSum(int64_t n, const Term& term) {
  float lanes[kLaneCount] = {};
  int64_t j = 0;
  for (; j + kLaneCount <= n; j += kLaneCount)
    for (int l = 0; l < kLaneCount; ++l) lanes[l] += term(j + l);
  for (int l = 0; j + l < n; ++l) lanes[l] += term(j + l);
  for (int width = kLaneCount / 2; width >= 1; width /= 2)
    for (int l = 0; l < width; ++l) lanes[l] += lanes[l + width];
  return lanes[0];
}

// --- grouped rows: small planes ----------------------------------------------------------

// Planes of fewer values than this are read as rows: the (P, C, Q) view as P rows of C x Q
// values, Q of each channel in turn (a group), summed like a channels-last input's rows, value
// by value, then group by group into the channels' sums. A plane's tiles cost some fixed work
// apiece, large next to a few values: a (256, 512, 4, 4) float32 step took 9.5 ms as planes,
// 2.2 ms as grouped rows, 3.6-3.7 ms compiled whole by XLA; (128, 512, 7, 7) 7.1, 3.3-3.4 and
// 7.8-8.0 ms; but (64, 256, 14, 14) 3.1 as planes, 3.6 as grouped rows, and (32, 64, 28, 28) 1.6
// and 2.2 (benchmarks/batchnorm.py's step, medians of 10 blocks).
constexpr int64_t kPlaneValues = 64;
// Rows may be wide (a (256, 512, 4, 4) input's grouped rows hold 8,192 values, a 2-D input's
// 16,384 channels): a chunk takes at least this many, in bands of their values when they are,
// lest the chunks' partial sums outgrow the input.
constexpr int64_t kChunkRows = 16;

// The chunks of rows of `channels` groups of `group` values (a group of one: channels last), at
// least `chunk_rows` rows a chunk, in bands of whole groups as wide as makes a chunk of that many
// rows about kChunkBytes, or one band of whole rows when a chunk of them holds that many rows.
// Rows are read kChunkRows at least a chunk; channel blocks and few rows all the rows of a band
// in one chunk. A few wide rows (a (16, 2048, 7, 7) input's 16 rows of 100,352 values) still make
// many chunks for the threads, each small enough for the cache (that step took 4.2 ms in one
// chunk, 2.4 in bands, XLA's 3.2, as grouped rows); and the chunks of wide rows keep few partial
// sums: in chunks of one or two whole rows, a (64, 16384) float32 input's sums were twice the
// input, added up on one thread (its forward and backward took 2.8 ms, 1.5 to 1.6 in bands of
// 1,024 channels, before so few rows were read as FewRows).
Chunks BandChunks(OpKernelContext* context, int64_t rows, int64_t chunk_rows, int64_t channels, int64_t group,
                  int64_t inputs, int64_t value_bytes) {
  const int64_t band_groups =
      std::clamp<int64_t>(kChunkBytes / (chunk_rows * inputs * value_bytes * group), 1, std::max<int64_t>(1, channels));
  return Chunks(context, rows, channels * group, band_groups * group, inputs, value_bytes, chunk_rows);
}

// The sums of a row's values, `group` of each channel in turn, added into the channels' sums.
void FoldGroups(const float* values, int64_t channels, int64_t group, float* totals) {
  for (int64_t c = 0; c < channels; ++c) {
    float total = 0.0f;
    for (int64_t q = 0; q < group; ++q) total += values[c * group + q];
    totals[c] = total;
  }
}

// The first `channels` values, one a channel, spread in place over the channels' groups: each
// `group` times in turn, one for each value of a row (back to front, so that each is read before
// a group overwrites it). Nothing to do for channels-last rows (a group of one).
void SpreadGroups(std::vector<float>& values, int64_t channels, int64_t group) {
  if (group == 1) return;
  for (int64_t c = channels - 1; c >= 0; --c) std::fill_n(values.begin() + c * group, group, values[c]);
}

// One value a channel, spread over the channels' groups (SpreadGroups).
std::vector<float> ExpandGroups(const float* per_channel, int64_t channels, int64_t group) {
  std::vector<float> values(channels * group);
  std::copy_n(per_channel, channels, values.begin());
  SpreadGroups(values, channels, group);
  return values;
}

// --- channel blocks: small planes in a few rows ---------------------------------------------

// Grouped rows no more than a chunk's (kChunkRows) are read channel by channel instead: a
// channel's planes gathered into one block of float32 values, its statistics and its output (its
// gradients and dx) computed from the block at once, in one pass over the input. Grouped rows
// keep sums for every value of a row and spread each channel's scale over its values: vectors as
// long as a row, as much as the input itself when it is one row: a float32 forward and backward
// (a tf.function of the two ops; 0.15 ms with none) took 1.06 ms as grouped rows, 0.47 as blocks
// on (1, 2048, 7, 7), 2.95 and 1.04 on (2, 16384, 4, 4), 2.17 and 1.47 on (16, 2048, 7, 7). With
// more rows, grouped rows catch up: 2.0 either way on (32, 1024, 7, 7), 0.53 and 0.80 on
// (64, 256, 4, 4).
struct ChannelBlocks {
  // The chunks for the threads: bands of whole channels, each one chunk of every row.
  Chunks Chunked(OpKernelContext* context, int64_t inputs, int64_t value_bytes) const {
    return BandChunks(context, rows, rows, channels, group, inputs, value_bytes);
  }
  // Calls body(channel) for every channel of the chunk's band.
  template <typename Body>
  void ForChannels(const Span& span, const Body& body) const {
    for (int64_t c = span.first_value / group; c < span.end_value / group; ++c) body(c);
  }
  // The values of channel c of `in` (rows x group) into `block`, as float32.
  template <typename T>
  void Gather(const T* in, int64_t c, float* block) const {
    for (int64_t r = 0; r < rows; ++r) {
      const T* plane = in + (r * channels + c) * group;
      if constexpr (std::is_same<T, float>::value) {
        std::copy_n(plane, group, block + r * group);
      } else {
        HalfToFloat(plane, block + r * group, group);
      }
    }
  }
  // The block's values written as channel c of `out` (rounded to float16 as TensorFlow casts).
  template <typename T>
  void Scatter(const float* block, int64_t c, T* out) const {
    for (int64_t r = 0; r < rows; ++r) {
      T* plane = out + (r * channels + c) * group;
      if constexpr (std::is_same<T, float>::value) {
        std::copy_n(block + r * group, group, plane);
      } else {
        FloatToHalf(block + r * group, plane, group);
      }
    }
  }
  int64_t Values() const { return rows * group; }
  int64_t rows, channels, group;
};

// A channel block's values, at most.
constexpr int64_t kBlockValues = kChunkRows * (kPlaneValues - 1);
using Block = std::array<float, kBlockValues>;
// The sum of term(j) over a block of n values (see LaneSum): in 16 partial sums, one vector, when
// the block is short; long ones keep LaneSum's 64, four vectors added to at once.
template <typename Term>
float BlockSum(int64_t n, const Term& term) {
  return n >= 4 * kLanes ? LaneSum(n, term) : LaneSum<16>(n, term);
}

// Rows of every channel: `count` rows of C values (channels last) or of C groups (grouped rows).
struct Rows {
  int64_t count;
};

// Channels-last rows no more than kFewRows: each chunk holds every row of its band of channels
// (BandChunks), whose statistics and output (sums and dx) it computes whole, in one pass over the
// input instead of two, with no partial sums to add up between them; for 16 rows or fewer, the
// same numbers as Rows, which also sums them in one chunk a band. A float32 forward and backward
// (a tf.function of the two ops, 0.11 ms with none) took, as Rows and as FewRows: 0.90 and 0.67 ms
// on (16, 16384), 0.63 and 0.42 on (2, 16384), 1.55-1.60 and 1.07-1.19 on (64, 16384), 1.41 and
// 1.10 on (128, 8192); the same on narrower rows ((128, 1024): 0.36 and 0.33). With more rows a
// band narrows (64 KB of every row): 1.35 and 1.19 on (256, 4096), but 0.80 and 1.17 on
// (512, 1024), in bands of 16 channels backward.
struct FewRows {
  int64_t count;
};
constexpr int64_t kFewRows = 128;

// How the (outer, C, inner) view of an input is read: as planes, channel blocks, few rows or rows.
using Reading = std::variant<Planes, ChannelBlocks, FewRows, Rows>;

template <typename T>
Reading ReadingOf(int64_t outer, int64_t channels, int64_t inner) {
  if (inner >= kPlaneValues) return Planes(outer, channels, inner, PlaneTile<T>(inner));
  if (inner > 1 && 1 <= outer && outer <= kChunkRows) return ChannelBlocks{outer, channels, inner};
  if (inner == 1 && 1 <= outer && outer <= kFewRows) return FewRows{outer};
  return Rows{outer};
}

// The values a channel has in a row, for a pass's vectors of one value for each value of a row:
// one, but for grouped rows.
int64_t RowGroup(const Reading& reading, int64_t inner) { return std::holds_alternative<Rows>(reading) ? inner : 1; }

// What the two ops share: the epsilon and axis attributes, and the start of a call: the inputs
// checked (x with that axis; the inputs shaped as x; those of one value a channel), then the
// (P, C, Q) view sized and the outputs allocated, one shaped as x and two of one value a channel.
class BatchNormKernel : public OpKernel {
 public:
  struct Input {
    int index;
    const char* name;
  };

  BatchNormKernel(OpKernelConstruction* context, Input x, std::vector<Input> shaped_as_x,
                  std::vector<Input> per_channel)
      : OpKernel(context), x_(x), shaped_as_x_(std::move(shaped_as_x)), per_channel_(std::move(per_channel)) {
    OP_REQUIRES_OK(context, context->GetAttr("epsilon", &epsilon_));
    OP_REQUIRES_OK(context, context->GetAttr("axis", &axis_));
  }

  void Compute(OpKernelContext* context) final {
    const Tensor& x = context->input(x_.index);
    OP_REQUIRES(context, -x.dims() <= axis_ && axis_ < x.dims(),
                absl::InvalidArgumentError("axis " + std::to_string(axis_) + " is not an axis of x, of rank " +
                                           std::to_string(x.dims())));
    for (const Input& input : shaped_as_x_)
      OP_REQUIRES(context, context->input(input.index).shape() == x.shape(),
                  absl::InvalidArgumentError(std::string(input.name) + " and x must have the same shape"));
    const int axis = axis_ < 0 ? axis_ + x.dims() : axis_;
    const int64_t channels = x.dim_size(axis);
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < axis; ++i) outer *= x.dim_size(i);
    for (int i = axis + 1; i < x.dims(); ++i) inner *= x.dim_size(i);
    if (inner == 0) {  // no values either way: no rows (a group of none would hold no channel)
      outer = 0;
      inner = 1;
    }
    for (const Input& input : per_channel_) {
      const int64_t values = context->input(input.index).NumElements();
      OP_REQUIRES(context, values == channels,
                  absl::InvalidArgumentError(std::string(input.name) + " must have one value per channel: " +
                                             std::to_string(values) + " for " + std::to_string(channels)));
    }
    Tensor* outputs[3];
    for (int output = 0; output < 3; ++output)
      OP_REQUIRES_OK(context, context->allocate_output(output, output == 0 ? x.shape() : TensorShape({channels}),
                                                       &outputs[output]));
    Run(context, outer, channels, inner, outputs);
  }

 protected:
  // The step on the (outer, channels, inner) view of x (see Planes); inner is 1 for channels last.
  virtual void Run(OpKernelContext* context, int64_t outer, int64_t channels, int64_t inner,
                   Tensor* const (&outputs)[3]) = 0;

  float epsilon_;

 private:
  int axis_;
  const Input x_;
  const std::vector<Input> shaped_as_x_, per_channel_;
};

// --- forward ---------------------------------------------------------------------------

template <typename T>
class BatchNormTraining : public BatchNormKernel {
 public:
  explicit BatchNormTraining(OpKernelConstruction* context)
      : BatchNormKernel(context, {0, "x"}, {}, {{1, "gamma"}, {2, "beta"}}) {
    int moving;
    OP_REQUIRES_OK(context, context->GetAttr("N", &moving));
    OP_REQUIRES(context, moving == 0 || moving == 2,
                absl::InvalidArgumentError("moving must be empty or the moving mean's and variance's handles"));
    OP_REQUIRES_OK(context, context->GetAttr("momentum", &momentum_));
    OP_REQUIRES_OK(context, context->GetAttr("batch_weight", &batch_weight_));
  }

 private:
  struct Pass;
  static constexpr int kFirstMoving = 3;  // the moving statistics' handles, when given

  void Run(OpKernelContext* context, int64_t outer, int64_t channels, int64_t inner,
           Tensor* const (&outputs)[3]) override {
    const Tensor &x = context->input(0), &gamma = context->input(1), &beta = context->input(2);
    Tensor *y = outputs[0], *mean_out = outputs[1], *variance_out = outputs[2];

    const Reading reading = ReadingOf<T>(outer, channels, inner);
    const int64_t group = RowGroup(reading, inner);
    Pass pass{x.flat<T>().data(), y->flat<T>().data(), y->TotalBytes() >= kStreamBytes, channels, group,
              static_cast<float>(outer * inner), epsilon_, gamma.flat<float>().data(), beta.flat<float>().data(),
              mean_out->flat<float>().data(), variance_out->flat<float>().data(),
              std::vector<float>(channels * group), std::vector<float>(channels * group)};
    std::visit([&](const auto& view) { RunOn(context, pass, view); }, reading);
    if (context->num_inputs() > kFirstMoving) {
      OP_REQUIRES_OK(context, UpdateMoving(context, kFirstMoving, "moving_mean", pass.mean, channels));
      OP_REQUIRES_OK(context, UpdateMoving(context, kFirstMoving + 1, "moving_variance", pass.variance, channels));
    }
  }

  // The statistics of the rows (grouped rows) and the output. The squared deviations from the
  // mean: a chunk's from its own mean in each value of a row, plus its rows times the square of
  // the shift between the two means, added in chunk order, then group by group.
  static void RunOn(OpKernelContext* context, Pass& pass, const Rows& rows) {
    const int64_t channels = pass.channels, group = pass.group, row_values = channels * group;
    const Chunks chunks = BandChunks(context, rows.count, kChunkRows, channels, group, 1, sizeof(T));
    const std::unique_ptr<float[]> partial = chunks.Partial(2);  // per chunk: Pass::ChunkMoments
    chunks.ForEach([&](int64_t chunk, const Span& span) {
      pass.ChunkMoments(span, chunks.Part(partial.get(), chunk, 2, 0));
    });
    std::vector<float> totals(row_values);  // for each value of a row
    chunks.Total(partial.get(), 2, 0, totals.data());
    FoldGroups(totals.data(), channels, group, pass.mean);
    pass.Means(pass.mean);
    const std::vector<float> mean = ExpandGroups(pass.mean, channels, group);
    std::fill(totals.begin(), totals.end(), 0.0f);
    for (int64_t chunk = 0; chunk < chunks.count(); ++chunk) {
      const Span span = chunks.At(chunk);
      const float* sums = chunks.Part(partial.get(), chunk, 2, 0);
      const float* squares = chunks.Part(partial.get(), chunk, 2, 1);
      const float chunk_rows = static_cast<float>(span.Rows());
      const float* band_mean = mean.data() + span.first_value;
      float* band_totals = totals.data() + span.first_value;
      for (int64_t j = 0; j < span.Width(); ++j) {
        const float shift = sums[j] / chunk_rows - band_mean[j];
        band_totals[j] += squares[j] + chunk_rows * shift * shift;
      }
    }
    FoldGroups(totals.data(), channels, group, pass.variance);
    pass.Means(pass.variance);
    pass.Affine();
    chunks.ForEach([&](int64_t, const Span& span) {
      pass.Output(span);
    });
  }

  // The same for planes: each tile's sum and squared deviations from its own mean, shifted to
  // the channel's mean and added in (plane, tile) order.
  static void RunOn(OpKernelContext* context, Pass& pass, const Planes& planes) {
    const Chunks chunks = planes.Chunked(context, 1, sizeof(T));
    const std::unique_ptr<float[]> moments = planes.TileSums();
    chunks.ForEach([&](int64_t, const Span& span) {
      RowReader<T> read(planes.tile);
      planes.ForTiles(span.first_row, span.end_row, [&](int64_t tile, int64_t, int64_t start, int64_t width) {
        const float* __restrict v = read(pass.in + start, width);
        float* tile_moments = moments.get() + 2 * tile;
        const float sum = LaneSum(width, [v](int64_t j) { return v[j]; });
        const float center = sum / static_cast<float>(width);
        tile_moments[0] = sum;
        tile_moments[1] = LaneSum(width, [v, center](int64_t j) {
          const float deviation = v[j] - center;
          return deviation * deviation;
        });
      });
    });
    planes.Total(moments.get(), 2, pass.mean, [](const float* tile, int64_t, int64_t) { return tile[0]; });
    pass.Means(pass.mean);
    planes.Total(moments.get(), 2, pass.variance, [&pass](const float* tile, int64_t c, int64_t width) {
      const float shift = tile[0] / static_cast<float>(width) - pass.mean[c];
      return tile[1] + static_cast<float>(width) * shift * shift;
    });
    pass.Means(pass.variance);
    pass.Affine();
    chunks.ForEach([&](int64_t, const Span& span) {
      pass.PlaneOutput(planes, span.first_row, span.end_row);
    });
  }

  // The same for few rows: each chunk's band of channels, whole.
  static void RunOn(OpKernelContext* context, Pass& pass, const FewRows& rows) {
    const Chunks chunks = BandChunks(context, rows.count, rows.count, pass.channels, 1, 1, sizeof(T));
    chunks.ForEach([&](int64_t, const Span& span) {
      // every row is in the chunk: its moments, from its own mean, are the channels'
      const int64_t width = span.Width();
      const std::unique_ptr<float[]> moments(new float[2 * width]);
      pass.ChunkMoments(span, moments.get());
      for (int64_t j = 0; j < width; ++j) {
        pass.mean[span.first_value + j] = moments[j] / pass.count;
        pass.variance[span.first_value + j] = moments[width + j] / pass.count;
      }
      pass.AffineOf(span.first_value, span.end_value);
      pass.Output(span);
    });
  }

  // The same for channel blocks: each channel's mean, then the squared deviations from it, summed
  // over its block (two passes over values in the cache), then its output.
  static void RunOn(OpKernelContext* context, Pass& pass, const ChannelBlocks& blocks) {
    const Chunks chunks = blocks.Chunked(context, 1, sizeof(T));
    const int64_t n = blocks.Values();
    chunks.ForEach([&](int64_t, const Span& span) {
      Block values, result;
      const float* __restrict v = values.data();
      float* __restrict y = result.data();
      blocks.ForChannels(span, [&](int64_t c) {
        blocks.Gather(pass.in, c, values.data());
        const float mean = BlockSum(n, [v](int64_t j) { return v[j]; }) / pass.count;
        const float variance = BlockSum(n, [v, mean](int64_t j) {
          const float deviation = v[j] - mean;
          return deviation * deviation;
        }) / pass.count;
        pass.mean[c] = mean;
        pass.variance[c] = variance;
        const float k = pass.gamma[c] * InverseDeviation(variance, pass.epsilon), o = pass.beta[c] - mean * k;
        for (int64_t j = 0; j < n; ++j) y[j] = v[j] * k + o;
        blocks.Scatter(y, c, pass.out);
      });
    });
  }

  // The variable of the handle at `input` := its value * momentum + batch * batch_weight. The new
  // value is a tensor of its own: a reader still holding the old one keeps it unchanged.
  absl::Status UpdateMoving(OpKernelContext* context, int input, const std::string& name, const float* batch,
                            int64_t channels) const {
    tensorflow::core::RefCountPtr<tensorflow::Var> variable;
    TF_RETURN_IF_ERROR(tensorflow::LookupResource(context, tensorflow::HandleFromInput(context, input), &variable));
    tensorflow::mutex_lock lock(*variable->mu());
    const Tensor& old = *variable->tensor();
    if (!variable->is_initialized || old.dtype() != tensorflow::DT_FLOAT || old.NumElements() != channels)
      return absl::InvalidArgumentError(name + " must be an initialized float32 variable of one value per channel");
    Tensor updated;
    TF_RETURN_IF_ERROR(context->allocate_temp(tensorflow::DT_FLOAT, old.shape(), &updated));
    const float* __restrict moving = old.flat<float>().data();
    float* __restrict result = updated.flat<float>().data();
    for (int64_t c = 0; c < channels; ++c) result[c] = moving[c] * momentum_ + batch[c] * batch_weight_;
    *variable->tensor() = updated;
    return absl::OkStatus();
  }

  float momentum_, batch_weight_;

  // The passes over the rows [first, end) of a chunk, or the planes.
  struct Pass {
    const T* in;
    T* out;
    bool streamed;  // out is written past the caches
    int64_t channels, group;  // a row holds `group` values of each channel in turn (see GroupedRows)
    float count, epsilon;
    const float *gamma, *beta;
    float *mean, *variance;
    std::vector<float> scale, offset;  // y = x * scale + offset, for each value of a row (of a channel for planes)

    // sum(term(x, j)) over a chunk's rows for each value j of its band, into `sum`
    template <typename Term>
    void SumTerms(const Span& span, float* sum, const Term& term) const {
      const int64_t row_values = channels * group, band_width = span.Width();
      const T* band = in + span.first_value;
      RowReader<T> read(band_width);
      SumRows<1>(span.first_row, span.end_row, band_width, sum, [&](auto rows, int64_t r, float* __restrict group_sums) {
        constexpr int n = decltype(rows)::value;
        ForTiles<T>(band_width, [&](int64_t c0, int64_t width) {
          const float* row[n];
          for (int k = 0; k < n; ++k) row[k] = read(band + (r + k) * row_values + c0, width, k);
          float* __restrict tile_group = group_sums + c0;
          for (int64_t j = 0; j < width; ++j) {
            float sum = 0.0f;
            for (int k = 0; k < n; ++k) sum += term(row[k][j], c0 + j);
            tile_group[j] += sum;
          }
        });
      });
    }
    // A chunk's rows' sum into sums[0, width), then their squared deviations from their own mean
    // (that sum over their count) into sums[width, 2 width), for each value of its band.
    void ChunkMoments(const Span& span, float* sums) const {
      const int64_t band_width = span.Width();
      SumTerms(span, sums, [](float value, int64_t) { return value; });
      std::unique_ptr<float[]> center(new float[band_width]);
      for (int64_t j = 0; j < band_width; ++j) center[j] = sums[j] / static_cast<float>(span.Rows());
      const float* __restrict m = center.get();
      SumTerms(span, sums + band_width, [m](float value, int64_t j) {
        const float deviation = value - m[j];
        return deviation * deviation;
      });
    }
    void Means(float* sums) const {
      for (int64_t c = 0; c < channels; ++c) sums[c] /= count;
    }
    void Affine() {
      AffineOf(0, channels);
      SpreadGroups(scale, channels, group);
      SpreadGroups(offset, channels, group);
    }
    // scale and offset of the channels [first, end)
    // (restrict-qualified, or the compiler keeps the loop scalar lest the outputs alias the inputs)
    void AffineOf(int64_t first, int64_t end) {
      float* __restrict k = scale.data();
      float* __restrict o = offset.data();
      const float *__restrict g = gamma, *__restrict b = beta, *__restrict m = mean, *__restrict v = variance;
      const float e = epsilon;
      for (int64_t c = first; c < end; ++c) {
        k[c] = g[c] * InverseDeviation(v[c], e);
        o[c] = b[c] - m[c] * k[c];
      }
    }
    // y of the planes [first, end)
    void PlaneOutput(const Planes& planes, int64_t first, int64_t end) const {
      RowReader<T> read(planes.tile);
      RowWriter<T> write(planes.tile, streamed);
      planes.ForTiles(first, end, [&](int64_t, int64_t c, int64_t start, int64_t width) {
        const float* __restrict v = read(in + start, width);
        float* __restrict result = write.Start(out + start);
        const float k = scale[c], o = offset[c];
        for (int64_t j = 0; j < width; ++j) result[j] = v[j] * k + o;
        write.Finish(out + start, width);
      });
    }
    void Output(const Span& span) const {
      const int64_t row_values = channels * group, band_width = span.Width();
      RowReader<T> read(band_width);
      RowWriter<T> write(band_width, streamed);
      const float* __restrict k = scale.data() + span.first_value;
      const float* __restrict o = offset.data() + span.first_value;
      ForChunkTiles<T>(span, row_values, [&](int64_t at, int64_t c0, int64_t width) {
        const float* __restrict row = read(in + at, width);
        float* __restrict result = write.Start(out + at);
        const float* __restrict kt = k + c0;
        const float* __restrict ot = o + c0;
        for (int64_t j = 0; j < width; ++j) result[j] = row[j] * kt[j] + ot[j];
        write.Finish(out + at, width);
      });
    }
  };
};

// --- backward --------------------------------------------------------------------------

template <typename T>
class BatchNormTrainingGrad : public BatchNormKernel {
 public:
  explicit BatchNormTrainingGrad(OpKernelConstruction* context)
      : BatchNormKernel(context, {1, "x"}, {{0, "dy"}}, {{2, "gamma"}, {3, "mean"}, {4, "variance"}}) {}

 private:
  struct Pass;
  void Run(OpKernelContext* context, int64_t outer, int64_t channels, int64_t inner,
           Tensor* const (&outputs)[3]) override {
    const Tensor &dy = context->input(0), &x = context->input(1), &gamma = context->input(2);
    const Tensor &mean = context->input(3), &variance = context->input(4);
    Tensor *dx = outputs[0], *dgamma = outputs[1], *dbeta = outputs[2];

    const Reading reading = ReadingOf<T>(outer, channels, inner);
    const int64_t group = RowGroup(reading, inner);
    std::vector<float> inverse(channels);
    const float* v = variance.flat<float>().data();
    for (int64_t c = 0; c < channels; ++c) inverse[c] = InverseDeviation(v[c], epsilon_);
    Pass pass{dy.flat<T>().data(), x.flat<T>().data(), dx->flat<T>().data(), dx->TotalBytes() >= kStreamBytes,
              channels, group, static_cast<float>(outer * inner), gamma.flat<float>().data(),
              dgamma->flat<float>().data(), dbeta->flat<float>().data(),
              ExpandGroups(mean.flat<float>().data(), channels, group), ExpandGroups(inverse.data(), channels, group),
              std::vector<float>(channels * group), std::vector<float>(channels * group),
              std::vector<float>(channels * group)};
    std::visit([&](const auto& view) { RunOn(context, pass, view); }, reading);
  }

  static void RunOn(OpKernelContext* context, Pass& pass, const Rows& rows) {
    const int64_t channels = pass.channels, group = pass.group, row_values = channels * group;
    const Chunks chunks = BandChunks(context, rows.count, kChunkRows, channels, group, 2, sizeof(T));
    const std::unique_ptr<float[]> partial = chunks.Partial(2);  // per chunk: sum(dy), then sum(dy * xhat)
    chunks.ForEach([&](int64_t chunk, const Span& span) {
      pass.Sums(span, chunks.Part(partial.get(), chunk, 2, 0));
    });
    std::vector<float> totals(row_values);  // for each value of a row
    chunks.Total(partial.get(), 2, 0, totals.data());
    FoldGroups(totals.data(), channels, group, pass.dbeta);
    chunks.Total(partial.get(), 2, 1, totals.data());
    FoldGroups(totals.data(), channels, group, pass.dgamma);
    pass.Means();
    chunks.ForEach([&](int64_t, const Span& span) {
      pass.Gradient(span);
    });
  }

  static void RunOn(OpKernelContext* context, Pass& pass, const Planes& planes) {
    const Chunks chunks = planes.Chunked(context, 2, sizeof(T));
    const std::unique_ptr<float[]> sums = planes.TileSums();
    chunks.ForEach([&](int64_t, const Span& span) {
      RowReader<T> read_dy(planes.tile), read_x(planes.tile);
      planes.ForTiles(span.first_row, span.end_row, [&](int64_t tile, int64_t c, int64_t start, int64_t width) {
        const float* __restrict g = read_dy(pass.gradient + start, width);
        const float* __restrict v = read_x(pass.in + start, width);
        const float m = pass.mean[c], inv = pass.inverse[c];
        sums[2 * tile] = LaneSum(width, [g](int64_t j) { return g[j]; });
        sums[2 * tile + 1] = LaneSum(width, [g, v, m, inv](int64_t j) { return g[j] * ((v[j] - m) * inv); });
      });
    });
    planes.Total(sums.get(), 2, pass.dbeta, [](const float* tile, int64_t, int64_t) { return tile[0]; });
    planes.Total(sums.get(), 2, pass.dgamma, [](const float* tile, int64_t, int64_t) { return tile[1]; });
    pass.Means();
    chunks.ForEach([&](int64_t, const Span& span) {
      pass.PlaneGradient(planes, span.first_row, span.end_row);
    });
  }

  // The same for few rows: each chunk's band of channels, whole.
  static void RunOn(OpKernelContext* context, Pass& pass, const FewRows& rows) {
    const Chunks chunks = BandChunks(context, rows.count, rows.count, pass.channels, 1, 2, sizeof(T));
    chunks.ForEach([&](int64_t, const Span& span) {
      const int64_t width = span.Width();
      const std::unique_ptr<float[]> sums(new float[2 * width]);  // sum(dy), then sum(dy * xhat)
      pass.Sums(span, sums.get());
      std::copy_n(sums.get(), width, pass.dbeta + span.first_value);
      std::copy_n(sums.get() + width, width, pass.dgamma + span.first_value);
      pass.MeansOf(span.first_value, span.end_value);
      pass.Gradient(span);
    });
  }

  // The same for channel blocks: each channel's sums over its block, then its dx.
  static void RunOn(OpKernelContext* context, Pass& pass, const ChannelBlocks& blocks) {
    const Chunks chunks = blocks.Chunked(context, 2, sizeof(T));
    const int64_t n = blocks.Values();
    chunks.ForEach([&](int64_t, const Span& span) {
      Block gradients, values, result;
      const float* __restrict g = gradients.data();
      const float* __restrict v = values.data();
      float* __restrict dx = result.data();
      blocks.ForChannels(span, [&](int64_t c) {
        blocks.Gather(pass.gradient, c, gradients.data());
        blocks.Gather(pass.in, c, values.data());
        const float m = pass.mean[c], inv = pass.inverse[c];
        const float dbeta = BlockSum(n, [g](int64_t j) { return g[j]; });
        const float dgamma = BlockSum(n, [g, v, m, inv](int64_t j) { return g[j] * ((v[j] - m) * inv); });
        pass.dbeta[c] = dbeta;
        pass.dgamma[c] = dgamma;
        const float k = pass.gamma[c] * inv, mdy = dbeta / pass.count, mdyn = dgamma / pass.count;
        for (int64_t j = 0; j < n; ++j) dx[j] = k * (g[j] - (mdy + ((v[j] - m) * inv) * mdyn));
        blocks.Scatter(dx, c, pass.out);
      });
    });
  }

  // Adds the n rows' dy into sum_dy and dy * xhat into sum_dy_normalized, over `width` channels.
  // (A function of its own: inlined in the tile's lambda, GCC 12 no longer vectorized the loop.)
  template <int n>
  static void AddGradientTerms(const float* const (&dy_row)[n], const float* const (&x_row)[n],
                               const float* __restrict m, const float* __restrict inv, float* __restrict sum_dy,
                               float* __restrict sum_dy_normalized, int64_t width) {
    for (int64_t j = 0; j < width; ++j) {
      float dy = 0.0f, dy_normalized = 0.0f;
      for (int k = 0; k < n; ++k) {
        const float normalized = (x_row[k][j] - m[j]) * inv[j];
        dy += dy_row[k][j];
        dy_normalized += dy_row[k][j] * normalized;
      }
      sum_dy[j] += dy;
      sum_dy_normalized[j] += dy_normalized;
    }
  }

  // The passes over the rows [first, end) of a chunk, or the planes.
  struct Pass {
    const T *gradient, *in;
    T* out;
    bool streamed;  // out is written past the caches
    int64_t channels, group;  // a row holds `group` values of each channel in turn (see GroupedRows)
    float count;
    const float* gamma;
    float *dgamma, *dbeta;
    // for each value of a row (of a channel for planes)
    std::vector<float> mean, inverse, scale, mean_dy, mean_dy_normalized;

    // A chunk's sum(dy), then sum(dy * xhat), into `sums`, for each value of its band
    void Sums(const Span& span, float* sums) const {
      const int64_t row_values = channels * group, band_width = span.Width();
      const T* dy_band = gradient + span.first_value;
      const T* x_band = in + span.first_value;
      RowReader<T> read_dy(band_width), read_x(band_width);
      const float* __restrict m = mean.data() + span.first_value;
      const float* __restrict inv = inverse.data() + span.first_value;
      SumRows<2>(span.first_row, span.end_row, band_width, sums, [&](auto rows, int64_t r, float* __restrict group_sums) {
        constexpr int n = decltype(rows)::value;
        ForTiles<T>(band_width, [&](int64_t c0, int64_t width) {
          const float *dy_row[n], *x_row[n];
          for (int k = 0; k < n; ++k) {
            dy_row[k] = read_dy(dy_band + (r + k) * row_values + c0, width, k);
            x_row[k] = read_x(x_band + (r + k) * row_values + c0, width, k);
          }
          AddGradientTerms<n>(dy_row, x_row, m + c0, inv + c0, group_sums + c0, group_sums + band_width + c0, width);
        });
      });
    }
    void Means() {
      MeansOf(0, channels);
      for (std::vector<float>* values : {&mean_dy, &mean_dy_normalized, &scale}) SpreadGroups(*values, channels, group);
    }
    // the means of dy and dy * xhat, and gamma * rsqrt(variance + epsilon), of the channels [first, end)
    void MeansOf(int64_t first, int64_t end) {  // (restrict-qualified, as AffineOf)
      float *__restrict mdy = mean_dy.data(), *__restrict mdyn = mean_dy_normalized.data(), *__restrict k = scale.data();
      const float *__restrict db = dbeta, *__restrict dg = dgamma, *__restrict g = gamma, *__restrict inv = inverse.data();
      const float n = count;
      const int64_t step = group;
      for (int64_t c = first; c < end; ++c) {
        mdy[c] = db[c] / n;
        mdyn[c] = dg[c] / n;
        k[c] = g[c] * inv[c * step];
      }
    }
    // dx of the planes [first, end)
    void PlaneGradient(const Planes& planes, int64_t first, int64_t end) const {
      RowReader<T> read_dy(planes.tile), read_x(planes.tile);
      RowWriter<T> write(planes.tile, streamed);
      planes.ForTiles(first, end, [&](int64_t, int64_t c, int64_t start, int64_t width) {
        const float* __restrict g = read_dy(gradient + start, width);
        const float* __restrict v = read_x(in + start, width);
        float* __restrict result = write.Start(out + start);
        const float m = mean[c], inv = inverse[c], k = scale[c], mdy = mean_dy[c], mdyn = mean_dy_normalized[c];
        for (int64_t j = 0; j < width; ++j) result[j] = k * (g[j] - (mdy + ((v[j] - m) * inv) * mdyn));
        write.Finish(out + start, width);
      });
    }
    void Gradient(const Span& span) const {
      const int64_t row_values = channels * group, band_width = span.Width();
      RowReader<T> read_dy(band_width), read_x(band_width);
      RowWriter<T> write(band_width, streamed);
      const float* __restrict m = mean.data() + span.first_value;
      const float* __restrict inv = inverse.data() + span.first_value;
      const float* __restrict k = scale.data() + span.first_value;
      const float* __restrict mdy = mean_dy.data() + span.first_value;
      const float* __restrict mdyn = mean_dy_normalized.data() + span.first_value;
      ForChunkTiles<T>(span, row_values, [&](int64_t at, int64_t c0, int64_t width) {
        const float* __restrict dy_row = read_dy(gradient + at, width);
        const float* __restrict x_row = read_x(in + at, width);
        float* __restrict result = write.Start(out + at);
        const float *__restrict mt = m + c0, *__restrict invt = inv + c0, *__restrict kt = k + c0;
        const float *__restrict mdyt = mdy + c0, *__restrict mdynt = mdyn + c0;
        for (int64_t j = 0; j < width; ++j) {
          const float normalized = (x_row[j] - mt[j]) * invt[j];
          result[j] = kt[j] * (dy_row[j] - (mdyt[j] + normalized * mdynt[j]));
        }
        write.Finish(out + at, width);
      });
    }
  };
};

// --- registration ----------------------------------------------------------------------

// Either op's shapes, as BatchNormKernel checks them: x with the axis `axis`, the inputs `shaped_as_x` of
// its shape and those `per_channel` of one value a channel; the outputs x's shape, then two per channel.
absl::Status BatchNormShapes(InferenceContext* context, int x_index, std::initializer_list<int> shaped_as_x,
                             std::initializer_list<int> per_channel) {
  int axis;
  TF_RETURN_IF_ERROR(context->GetAttr("axis", &axis));
  ShapeHandle x;
  TF_RETURN_IF_ERROR(context->WithRankAtLeast(context->input(x_index), axis < 0 ? -axis : axis + 1, &x));
  for (int input : shaped_as_x) TF_RETURN_IF_ERROR(context->Merge(context->input(input), x, &x));
  DimensionHandle channels = context->Dim(x, axis);
  for (int input : per_channel) {
    ShapeHandle vector;
    TF_RETURN_IF_ERROR(context->WithRank(context->input(input), 1, &vector));
    TF_RETURN_IF_ERROR(context->Merge(channels, context->Dim(vector, 0), &channels));
  }
  context->set_output(0, x);
  context->set_output(1, context->Vector(channels));
  context->set_output(2, context->Vector(channels));
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("NncardsBatchNormTraining")
    .Input("x: T")
    .Input("gamma: float")
    .Input("beta: float")
    .Input("moving: N * resource")
    .Output("y: T")
    .Output("mean: float")
    .Output("variance: float")
    .Attr("T: {half, float}")
    .Attr("epsilon: float")
    .Attr("axis: int = -1")
    .Attr("N: int >= 0")
    .Attr("momentum: float")
    .Attr("batch_weight: float")
    .SetIsStateful()
    .SetShapeFn([](InferenceContext* context) { return BatchNormShapes(context, 0, {}, {1, 2}); });

REGISTER_OP("NncardsBatchNormTrainingGrad")
    .Input("dy: T")
    .Input("x: T")
    .Input("gamma: float")
    .Input("mean: float")
    .Input("variance: float")
    .Output("dx: T")
    .Output("dgamma: float")
    .Output("dbeta: float")
    .Attr("T: {half, float}")
    .Attr("epsilon: float")
    .Attr("axis: int = -1")
    .SetShapeFn([](InferenceContext* context) { return BatchNormShapes(context, 1, {0}, {2, 3, 4}); });

#define NNCARDS_REGISTER(T)                                                                              \
  REGISTER_KERNEL_BUILDER(                                                                               \
      Name("NncardsBatchNormTraining").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),            \
      BatchNormTraining<T>);                                                                             \
  REGISTER_KERNEL_BUILDER(                                                                               \
      Name("NncardsBatchNormTrainingGrad").Device(tensorflow::DEVICE_CPU).TypeConstraint<T>("T"),        \
      BatchNormTrainingGrad<T>);

NNCARDS_REGISTER(float)
NNCARDS_REGISTER(Eigen::half)

}  // namespace nncards
