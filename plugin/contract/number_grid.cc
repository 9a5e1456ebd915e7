// nncards' reader of long JSON arrays of numbers (contract/number_grid.py): the rows of a grid of
// numbers, parsed straight into a NumPy buffer by a plain C function, so that the caller (ctypes)
// lets the GIL go while it runs.
//
// It accepts only what it is sure of: JSON's number grammar exactly (RFC 8259: no '+', no leading
// zero, no '.5' or '1.', no NaN or Infinity), white space, commas and brackets making a full grid of
// one shape, no empty array, integers within int64, floats within the doubles' normal and subnormal
// range. Anything else is "not sure" (the caller then reads the text the old way, whose answers and
// errors are the contract): no error is ever explained here.
//
// Rounding is the old way's: a float token is converted by std::from_chars (correctly rounded, as
// simdjson and Python are); an integer token is read as an int64 and converted to double by a cast
// (so "-0" is +0.0 and 2**53 + 1 rounds to even, as NumPy converts Python ints).

#include <charconv>
#ifdef __AVX2__
#include <immintrin.h>
#endif
#include <cstdint>
#include <cstring>
#include <system_error>

namespace {

constexpr int kMaxDimensions = 32;
constexpr uint64_t kExactInteger = uint64_t{1} << 53;  // every integer up to this is a double
#if defined(__x86_64__)
static_assert(sizeof(long double) >= 10 && __LDBL_MANT_DIG__ == 64, "the x87's extended doubles");
constexpr long double kWidePowersOfTen[] = {
    1e0L,  1e1L,  1e2L,  1e3L,  1e4L,  1e5L,  1e6L,  1e7L,  1e8L,  1e9L,  1e10L, 1e11L, 1e12L, 1e13L,
    1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L, 1e20L, 1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L};
#endif
constexpr double kPowersOfTen[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

inline bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }
inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "eight digits are read little-endian");

// Whether eight bytes read little-endian are all ASCII digits, and their value (as fast_float does).
inline bool all_digits(uint64_t eight) {
  return ((eight & 0xF0F0F0F0F0F0F0F0) | (((eight + 0x0606060606060606) & 0xF0F0F0F0F0F0F0F0) >> 4)) ==
         0x3333333333333333;
}
inline uint64_t eight_digits(uint64_t eight) {
  eight -= 0x3030303030303030;
  eight = (eight * 10) + (eight >> 8);
  return (((eight & 0x000000FF000000FF) * (100 + (uint64_t{1000000} << 32))) +
          (((eight >> 16) & 0x000000FF000000FF) * (1 + (uint64_t{10000} << 32)))) >> 32;
}

struct Rows {
  const char* at;
  const char* end;
  int dimensions;                   // of a row: 0 when a row is a number
  int64_t shape[kMaxDimensions];    // a row's, learnt from the first row (-1: not yet)
  double* doubles;                  // where values go: one of these three, the others null
  float* floats;                    // each value as a double, then rounded to the nearest float
  int64_t* integers;
  int64_t capacity;
  int64_t written = 0;
  bool integers_only = true;        // every token so far had no fraction and no exponent

  // A float's value, or an integer's as a double (a cast: -0 is +0.0, 2**53 + 1 rounds to even).
  // As a float32 it is that double rounded to the nearest float, as NumPy casts a float64 array:
  // the old way's grid cast to a float32 Input, to the bit, without the float64 grid. For
  // benchmarks/runs.py's 6.3 M numbers, 25 MB written instead of 50 MB then read and cast: 75 ms
  // (136 ms of CPU) instead of 88 (167) in process, medians of 9 taking turns.
  void put(double value) {
    if (floats) floats[written++] = static_cast<float>(value);
    else doubles[written++] = value;
  }

  void skip_space() {
    while (at < end && is_space(*at)) ++at;
  }

  bool number() {
    const char* start = at;
    bool negative = at < end && *at == '-';
    if (negative) ++at;
    if (at == end) return false;
    // The digits, gathered as an integer while they fit (for the fast path below), eight at a time
    // where they can be; `exponent`: where the decimal point leaves them.
    uint64_t digits = 0;
    int count = 0;
    int exponent = 0;
    auto gather = [&](bool fraction) {
      const char* first = at;
      uint64_t eight;
      while (end - at >= 8 && (std::memcpy(&eight, at, 8), all_digits(eight))) {
        digits = digits * 100000000 + eight_digits(eight);
        at += 8;
      }
      for (; at < end && is_digit(*at); ++at) digits = digits * 10 + (*at - '0');
      count += at - first;
      if (fraction) exponent -= at - first;
    };
    if (*at == '0') {
      ++at;
    } else if (*at >= '1' && *at <= '9') {
      gather(false);
    } else {
      return false;
    }
    bool integer = true;
    if (at < end && *at == '.') {
      integer = false;
      if (++at == end || !is_digit(*at)) return false;
      gather(true);
    }
    if (at < end && (*at == 'e' || *at == 'E')) {
      integer = false;
      bool below = ++at < end && *at == '-';
      if (at < end && (*at == '+' || *at == '-')) ++at;
      if (at == end || !is_digit(*at)) return false;
      int written_exponent = 0;
      for (; at < end && is_digit(*at); ++at) {
        if (written_exponent < 100000) written_exponent = written_exponent * 10 + (*at - '0');
      }
      exponent += below ? -written_exponent : written_exponent;
    }
    if (written == capacity) return false;
    if (integer) {
      int64_t value;
      auto [stop, error] = std::from_chars(start, at, value);
      if (error != std::errc() || stop != at) return false;  // past int64
      if (integers) integers[written++] = value;
      else put(static_cast<double>(value));
      return true;
    }
    integers_only = false;
    if (integers) return false;
    double value;
    if (count <= 19 && exponent >= -22 && exponent <= 22) {
      // The digits as a double divided or multiplied by an exact power of ten: one rounding.
      value = exponent < 0 ? static_cast<double>(digits) / kPowersOfTen[-exponent]
                           : static_cast<double>(digits) * kPowersOfTen[exponent];
      if (floats) {
        // A float needs the correctly rounded double only near a float's rounding boundary. The
        // digits as a double (off by at most half a step) scaled by the exact power (half a step
        // more, relative) lie within two of the double's steps of the decimal, so within two and
        // a half of its correctly rounded double: more than four steps from a halfway point
        // between two floats (a double's low 29 bits being 1 then 28 zeros, for floats from
        // 2**-126 up), both round to the same float. One way for all (a third of
        // benchmarks/runs.py's numbers have digits past 2**53, which took the x87's way): its
        // 6.3 M numbers read as float32 in 118-121 ms of CPU instead of 135-139 (medians of 9,
        // three turns each, in process).
        uint64_t bits;
        std::memcpy(&bits, &value, sizeof bits);
        uint64_t below_float = bits & 0x1FFFFFFF, halfway = 0x10000000;
        if (value >= 0x1p-126 && (below_float + 4 < halfway || below_float > halfway + 4)) {
          floats[written++] = static_cast<float>(negative ? -value : value);
          return true;
        }
      }
      if (digits <= kExactInteger) {
        // Clinger's fast path: both operands are exact doubles, so that one rounding is the
        // correctly rounded value (what from_chars computes, faster).
        put(negative ? -value : value);
        return true;
      }
    }
#if defined(__x86_64__)
    if (count <= 19 && exponent >= -27 && exponent <= 27) {
      // Up to 19 digits (below 2**64) and a power of ten up to 27 (5**27 < 2**64) are exact in the
      // x87's 64-bit significand, so one division or product there is correctly rounded to 64
      // bits; rounding that to the double's 53 is then correct unless it lies within one unit of
      // the 64 bits of a tie between two doubles (then from_chars decides).
      long double wide = exponent < 0 ? static_cast<long double>(digits) / kWidePowersOfTen[-exponent]
                                      : static_cast<long double>(digits) * kWidePowersOfTen[exponent];
      uint64_t significand;
      std::memcpy(&significand, &wide, sizeof significand);
      uint64_t below_double = significand & 0x7FF;  // the 11 bits rounding to 53 drops
      if (below_double < 0x3FE || below_double > 0x402) {
        value = static_cast<double>(wide);
        put(negative ? -value : value);
        return true;
      }
    }
#endif
    auto [stop, error] = std::from_chars(start, at, value);
    if (error != std::errc() || stop != at) return false;  // past the doubles' range, or below it
    put(value);
    return true;
  }

  // A grid at `level` of a row (a number at level `dimensions`), its sizes checked with `shape`.
  bool grid(int level) {
    if (level == dimensions) return number();
    if (at == end || *at != '[') return false;
    ++at;
    skip_space();
    int64_t size = 0;
    for (;;) {
      if (!grid(level + 1)) return false;
      ++size;
      skip_space();
      if (at == end) return false;
      if (*at == ']') break;
      if (*at != ',') return false;
      ++at;
      skip_space();
    }
    ++at;
    if (shape[level] < 0) shape[level] = size;
    return shape[level] == size;
  }
};


// Whether a byte is part of a number or white space (run_json.NUMBER_AND_SPACE).
inline bool number_or_space(unsigned char c) {
  return is_digit(c) || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-' || is_space(c);
}

}  // namespace

extern "C" {

// Copies the bytes of `text` that are neither part of a number nor white space to `out` (room for
// `length` bytes); returns how many. A body of numbers is mostly dropped: 32 bytes are classified
// at once, and only those kept are copied.
int64_t nncards_drop_numbers(const char* text, int64_t length, char* out) {
  int64_t kept = 0, at = 0;
#if defined(__AVX512VBMI__) && defined(__AVX512VBMI2__)
  // 64 at a time where the CPU packs bytes (vpcompressb): a byte below 64 is classified by a
  // table of 64, 'e' and 'E' by one comparison; the kept bytes are packed and stored at once
  // (the 64 stored may run past them: `out` has room for `length`, and kept <= at). The 126 MB
  // of benchmarks/runs.py's lists, dropped as they arrive on the event loop, in 7.5 ms instead of
  // 16 with AVX2's 32 at a time (whose kept bytes are copied one by one); fed in 128 KiB pieces,
  // 18 ms instead of 28 (in process, medians of 9, three turns each).
  alignas(64) static const char kDroppedBelow64[64] = {
      0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
      1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0};
  const __m512i table = _mm512_load_si512(kDroppedBelow64);
  const __m512i below = _mm512_set1_epi8(64), lower = _mm512_set1_epi8(0x20), letter = _mm512_set1_epi8('e');
  for (; at + 64 <= length; at += 64) {
    __m512i bytes = _mm512_loadu_si512(text + at);
    __m512i looked_up = _mm512_permutexvar_epi8(bytes, table);  // by the low 6 bits
    __mmask64 dropped = _mm512_mask_test_epi8_mask(_mm512_cmplt_epu8_mask(bytes, below), looked_up, looked_up) |
                        _mm512_cmpeq_epi8_mask(_mm512_or_si512(bytes, lower), letter);
    __mmask64 keep = ~dropped;
    _mm512_storeu_si512(out + kept, _mm512_maskz_compress_epi8(keep, bytes));
    kept += __builtin_popcountll(keep);
  }
#endif
#ifdef __AVX2__
  const __m256i zero = _mm256_set1_epi8('0'), nine = _mm256_set1_epi8(9);
  for (; at + 32 <= length; at += 32) {
    __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(text + at));
    __m256i offset = _mm256_sub_epi8(bytes, zero);  // a digit: 0..9 unsigned
    __m256i digit = _mm256_cmpeq_epi8(_mm256_min_epu8(offset, nine), offset);
    __m256i dropped = digit;
    for (char other : {'.', 'e', 'E', '+', '-', ' ', '\t', '\n', '\r'}) {
      dropped = _mm256_or_si256(dropped, _mm256_cmpeq_epi8(bytes, _mm256_set1_epi8(other)));
    }
    uint32_t keep = ~static_cast<uint32_t>(_mm256_movemask_epi8(dropped));
    while (keep) {
      out[kept++] = text[at + __builtin_ctz(keep)];
      keep &= keep - 1;
    }
  }
#endif
  for (; at < length; ++at) {
    out[kept] = text[at];
    kept += !number_or_space(static_cast<unsigned char>(text[at]));
  }
  return kept;
}


// How deep arrays and objects nest in a text whose strings are emptied (a skeleton): the most
// brackets and braces open at once, closings counted as the opposite of openings. Counted 32 bytes
// at a time where AVX2 is: the skeleton of benchmarks/runs.py's 126 MiB lists request (10.6 MB, on
// the request's path after its last byte) in 2.3 ms instead of 11.4 a byte at a time (two dependent
// steps per byte).
int64_t nncards_nesting_depth(const char* text, int64_t length) {
  int64_t depth = 0, deepest = 0, i = 0;
#ifdef __AVX2__
  const __m256i opening = _mm256_set1_epi8('['), opening_brace = _mm256_set1_epi8('{');
  const __m256i closing = _mm256_set1_epi8(']'), closing_brace = _mm256_set1_epi8('}');
  const __m256i lane_last = _mm256_set1_epi8(15);
  for (; i + 32 <= length; i += 32) {
    __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(text + i));
    __m256i opens = _mm256_or_si256(_mm256_cmpeq_epi8(bytes, opening), _mm256_cmpeq_epi8(bytes, opening_brace));
    __m256i closes = _mm256_or_si256(_mm256_cmpeq_epi8(bytes, closing), _mm256_cmpeq_epi8(bytes, closing_brace));
    if (_mm256_testz_si256(_mm256_or_si256(opens, closes), _mm256_or_si256(opens, closes))) continue;
    // A byte's step (+1 opening, -1 closing: the masks are -1 where they hold), then the running
    // sums within each 16-byte lane, then the low lane's total carried into the high lane: the
    // depth after each byte of the 32, relative to the depth before them (within -32..32).
    __m256i levels = _mm256_sub_epi8(closes, opens);
    levels = _mm256_add_epi8(levels, _mm256_slli_si256(levels, 1));
    levels = _mm256_add_epi8(levels, _mm256_slli_si256(levels, 2));
    levels = _mm256_add_epi8(levels, _mm256_slli_si256(levels, 4));
    levels = _mm256_add_epi8(levels, _mm256_slli_si256(levels, 8));
    __m256i totals = _mm256_shuffle_epi8(levels, lane_last);
    levels = _mm256_add_epi8(levels, _mm256_permute2x128_si256(totals, totals, 0x08));  // [0, low lane's]
    // The highest of the 32 (the shifts bring in zeros: a 0 stands for the depth before them,
    // which `deepest` already counts).
    __m128i highest = _mm_max_epi8(_mm256_castsi256_si128(levels), _mm256_extracti128_si256(levels, 1));
    highest = _mm_max_epi8(highest, _mm_srli_si128(highest, 8));
    highest = _mm_max_epi8(highest, _mm_srli_si128(highest, 4));
    highest = _mm_max_epi8(highest, _mm_srli_si128(highest, 2));
    highest = _mm_max_epi8(highest, _mm_srli_si128(highest, 1));
    int64_t top = depth + static_cast<int8_t>(_mm_cvtsi128_si32(highest));
    deepest = top > deepest ? top : deepest;
    depth += static_cast<int8_t>(_mm256_extract_epi8(levels, 31));
  }
#endif
  for (; i < length; ++i) {
    char c = text[i];
    depth += (c == '[' || c == '{') - (c == ']' || c == '}');
    deepest = depth > deepest ? depth : deepest;
  }
  return deepest;
}

// How many values a text of rows holds if it is a grid of numbers: its commas and one (in a grid
// without an empty array, every value but the last is followed by a comma at some level).
// Counted into one byte a lane over blocks of 255 steps (a lane cannot overflow), which the
// compiler turns into whole-vector comparisons: a sum of comparisons straight into an int64 was
// compiled lane by lane: 39 ms for benchmarks/runs.py's 126 MB on one thread, now 9.4.
int64_t nncards_grid_values(const char* text, int64_t length) {
  constexpr int64_t kLanes = 64, kBlock = 255 * kLanes;
  int64_t commas = 0, i = 0;
  for (; i + kBlock <= length; i += kBlock) {
    uint8_t lanes[kLanes] = {};
    for (int64_t step = i; step < i + kBlock; step += kLanes) {
      for (int lane = 0; lane < kLanes; ++lane) lanes[lane] += text[step + lane] == ',';
    }
    for (int lane = 0; lane < kLanes; ++lane) commas += lanes[lane];
  }
  for (; i < length; ++i) commas += text[i] == ',';
  return commas + 1;
}

// Parses `text`, rows of a grid separated by commas (an array's text without its outer brackets),
// into `doubles` (a float anywhere: every value as a double), `floats` (the same, each rounded to a
// float) or `integers` (every value an integer within int64), exactly `capacity` values. Returns 1
// and sets the rows' count, a row's dimensions and shape, and whether every token was an integer;
// 0 when not sure.
int nncards_grid_rows(const char* text, int64_t length, double* doubles, float* floats, int64_t* integers,
                      int64_t capacity, int64_t* rows, int32_t* dimensions, int64_t* shape,
                      int32_t* integers_only) {
  Rows reader{text, text + length};
  reader.doubles = doubles;
  reader.floats = floats;
  reader.integers = integers;
  reader.capacity = capacity;
  reader.skip_space();
  reader.dimensions = 0;
  for (const char* at = reader.at; at < reader.end && (*at == '[' || is_space(*at)); ++at) {
    reader.dimensions += *at == '[';
  }
  if (reader.dimensions >= kMaxDimensions) return 0;
  for (int level = 0; level < kMaxDimensions; ++level) reader.shape[level] = -1;
  int64_t count = 0;
  for (;;) {
    if (!reader.grid(0)) return 0;
    ++count;
    reader.skip_space();
    if (reader.at == reader.end) break;
    if (*reader.at != ',') return 0;
    ++reader.at;
    reader.skip_space();
  }
  if (reader.written != capacity) return 0;
  *rows = count;
  *dimensions = reader.dimensions;
  for (int level = 0; level < reader.dimensions; ++level) shape[level] = reader.shape[level];
  *integers_only = reader.integers_only;
  return 1;
}

}  // extern "C"
