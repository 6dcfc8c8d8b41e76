// The StreamScanner, fed a server byte stream in fuzzed chunks, against a reference walk over
// the whole stream at once: however the bytes arrive, the scanner must report the same
// frames, never count more bytes done than it was given, and end at the same place.

#include <fuzzer/FuzzedDataProvider.h>
#include <string>
#include <vector>

#include "fuzz.hpp"
#include "protocol/scanner.hpp"

namespace {

using namespace pgdog;

struct Walk {
  std::vector<std::string> frames;  // whole non-streamed frames, in order
  std::size_t done = 0;             // bytes that may be forwarded
  bool error = false;
  bool in_frame = false;  // the stream ends inside a streamed frame
};

// What the scanner must find, walking the complete stream in one go.
Walk reference(std::string_view stream, std::size_t max_size) {
  Walk w;
  std::size_t pos = 0;
  while (pos < stream.size()) {
    auto header = protocol::peek_header(stream.substr(pos), 0x80000000ULL);
    if (!header) {
      w.error = header.error() != protocol::Error::need_more;
      break;
    }
    const bool streamed = protocol::StreamScanner::streamed(header->type);
    if (!streamed && header->size > max_size) {
      w.error = true;
      break;
    }
    if (pos + header->size > stream.size()) {
      // A streamed frame is forwarded as it arrives; a small one waits for its end.
      if (streamed) {
        pos = stream.size();
        w.in_frame = true;
      }
      break;
    }
    if (!streamed) w.frames.emplace_back(stream.substr(pos, header->size));
    pos += header->size;
  }
  w.done = pos;
  return w;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  const std::size_t max_size = in.ConsumeIntegralInRange<std::size_t>(protocol::kHeaderSize, 512);
  const std::size_t max_chunk = in.ConsumeIntegralInRange<std::size_t>(1, 64);
  const std::uint8_t stop_mask = in.ConsumeIntegral<std::uint8_t>();
  // The chunk sizes come from the tail of the input, so the stream stays at the front where
  // the seeds put it.
  const std::string stream = in.ConsumeBytesAsString(in.remaining_bytes() * 3 / 4);

  protocol::StreamScanner scanner(max_size);
  Walk seen;
  std::string buffer;  // bytes received and not yet done, as in the proxy's read buffer
  std::size_t fed = 0;
  std::size_t calls = 0;
  while (true) {
    const std::size_t before = buffer.size();
    std::size_t frame_end = 0;  // the previous frame's end in `buffer`: frames are contiguous
    bool first = true;
    auto result = scanner.scan(buffer, [&](const protocol::Frame& f) {
      FUZZ_CHECK(fuzz::within(f.raw, buffer));
      FUZZ_CHECK(f.size() == std::size_t{protocol::read_u32(f.raw.data() + 1)} + 1);
      FUZZ_CHECK(f.body.data() == f.raw.data() + protocol::kHeaderSize);
      FUZZ_CHECK(protocol::StreamScanner::streamed(f.type) || f.size() <= max_size);
      const auto offset = static_cast<std::size_t>(f.raw.data() - buffer.data());
      if (!first) FUZZ_CHECK(offset == frame_end);
      first = false;
      frame_end = offset + f.size();
      if (!protocol::StreamScanner::streamed(f.type)) seen.frames.emplace_back(f.raw);
      // Stop after some frames, as the proxy does when it must act before reading on.
      return ((stop_mask >> (calls++ % 8)) & 1) == 0;
    });
    if (!result) {
      FUZZ_CHECK(result.error() == protocol::Error::bad_length ||
                 result.error() == protocol::Error::message_too_large);
      seen.error = true;
      break;
    }
    FUZZ_CHECK(*result <= before);
    FUZZ_CHECK(frame_end <= *result);
    seen.done += *result;
    buffer.erase(0, *result);
    if (*result > 0) continue;  // scan on: a stopped scan leaves whole frames behind
    if (fed == stream.size()) break;
    const std::size_t chunk =
        std::min(stream.size() - fed, in.ConsumeIntegralInRange<std::size_t>(1, max_chunk));
    buffer.append(stream, fed, chunk);
    fed += chunk;
  }
  FUZZ_CHECK(seen.done <= fed);

  const Walk expected = reference(stream, max_size);
  FUZZ_CHECK(seen.error == expected.error);
  FUZZ_CHECK(seen.frames == expected.frames);
  if (!expected.error) {
    FUZZ_CHECK(seen.done == expected.done);
    FUZZ_CHECK(scanner.in_frame() == expected.in_frame);
    // What is left is the start of a frame that needs more bytes, and wanted() says how many.
    if (!scanner.in_frame() && buffer.size() >= protocol::kHeaderSize) {
      const std::size_t whole = std::size_t{protocol::read_u32(buffer.data() + 1)} + 1;
      FUZZ_CHECK(whole > buffer.size());
      FUZZ_CHECK(scanner.wanted(buffer) == whole - buffer.size());
    }
  }
  return 0;
}
