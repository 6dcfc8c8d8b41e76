#pragma once

// Walks a byte stream frame by frame as the proxy does and checks the framing invariants on
// every step. Used by the frontend and backend decoder targets.

#include <string_view>

#include "fuzz.hpp"
#include "protocol/frame.hpp"

namespace pgdog::fuzz {

// Above any length the header can declare (2^31), so the limit never hides a decoder; the
// limit itself is checked separately, with one byte less than each frame needs.
constexpr std::size_t kMaxFrame = std::size_t{0x80000000};

// Calls on_frame(frame) for every whole frame at the front of `stream`; stops at the first
// incomplete or invalid one, as the proxy would (it reads more, or closes the connection).
template <class OnFrame>
void for_each_frame(std::string_view stream, OnFrame&& on_frame) {
  std::string_view rest = stream;
  while (true) {
    auto frame = protocol::next_frame(rest, kMaxFrame);
    auto header = protocol::peek_header(rest, kMaxFrame);
    if (rest.size() < protocol::kHeaderSize) {
      FUZZ_CHECK(!frame && frame.error() == protocol::Error::need_more);
      return;
    }
    const std::uint32_t declared = protocol::read_u32(rest.data() + 1);
    if (declared < 4 || declared > 0x7fffffffU) {
      FUZZ_CHECK(!header && header.error() == protocol::Error::bad_length);
      FUZZ_CHECK(!frame && frame.error() == protocol::Error::bad_length);
      return;
    }
    FUZZ_CHECK(header);
    FUZZ_CHECK(header->type == rest[0]);
    FUZZ_CHECK(header->size == std::size_t{declared} + 1);

    // A limit below the declared size is refused from the header alone.
    const std::size_t small_limit = header->size - 1;
    auto limited = protocol::next_frame(rest, small_limit);
    FUZZ_CHECK(!limited && limited.error() == protocol::Error::message_too_large);

    if (header->size > rest.size()) {
      FUZZ_CHECK(!frame && frame.error() == protocol::Error::need_more);
      return;
    }
    FUZZ_CHECK(frame);
    FUZZ_CHECK(frame->type == rest[0]);
    FUZZ_CHECK(frame->size() == std::size_t{declared} + 1);
    FUZZ_CHECK(frame->size() <= rest.size());
    FUZZ_CHECK(frame->raw.data() == rest.data());
    FUZZ_CHECK(frame->body.data() == rest.data() + protocol::kHeaderSize);
    FUZZ_CHECK(frame->body.size() + protocol::kHeaderSize == frame->size());
    on_frame(*frame);
    rest.remove_prefix(frame->size());
  }
}

}  // namespace pgdog::fuzz
