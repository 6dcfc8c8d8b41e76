#pragma once

#include <cstddef>
#include <string_view>

#include "protocol/frame.hpp"

namespace pgdog::protocol {

// Walks a server byte stream frame by frame, as bytes arrive, so the proxy can forward them
// unchanged while seeing the frames it cares about. Rows and COPY data (the only frames that
// can be huge) are streamed: forwarded as they arrive without waiting for the whole frame.
// Every other frame is handed to the callback whole, and may not exceed `max_size`.
class StreamScanner {
 public:
  explicit StreamScanner(std::size_t max_size) : max_size_(max_size) {}

  static bool streamed(char type) { return type == 'D' || type == 'd'; }

  // Scans the buffered bytes `data` from their start and returns how many of them are done
  // (may be forwarded and consumed). `on_frame(const Frame&)` sees each complete frame; it
  // returns false to stop the scan after that frame (the bytes up to it are done).
  // Streamed frames that are not whole yet are counted as done up to the end of `data`.
  // `on_piece(type, bytes)`, when given, sees the bytes of streamed frames that did not arrive
  // whole, piece by piece and in order (the first piece starts with the header).
  template <class OnFrame>
  boost::system::result<std::size_t> scan(std::string_view data, OnFrame&& on_frame) {
    return scan(data, on_frame, [](char, std::string_view) {});
  }

  template <class OnFrame, class OnPiece>
  boost::system::result<std::size_t> scan(std::string_view data, OnFrame&& on_frame,
                                          OnPiece&& on_piece) {
    std::size_t pos = 0;
    if (skip_ > 0) {
      const std::size_t take = skip_ < data.size() ? skip_ : data.size();
      on_piece(streaming_, data.substr(0, take));
      skip_ -= take;
      pos = take;
    }
    while (pos < data.size()) {
      auto rest = data.substr(pos);
      auto header = peek_header(rest, streamed_max_);
      if (!header) {
        if (header.error() == Error::need_more) break;
        return header.error();
      }
      if (header->size <= rest.size()) {
        if (!streamed(header->type) && header->size > max_size_) return Error::message_too_large;
        Frame f{header->type, rest.substr(kHeaderSize, header->size - kHeaderSize),
                rest.substr(0, header->size)};
        pos += header->size;
        if (!on_frame(f)) break;
        continue;
      }
      if (streamed(header->type)) {
        on_piece(header->type, rest);
        skip_ = header->size - rest.size();
        streaming_ = header->type;
        pos = data.size();
        break;
      }
      if (header->size > max_size_) return Error::message_too_large;
      break;  // a small frame not complete yet
    }
    return pos;
  }

  // Bytes the caller should have room for to complete the frame at the front of `data`.
  std::size_t wanted(std::string_view data) const {
    auto header = peek_header(data, streamed_max_);
    if (!header || header->size <= data.size()) return 0;
    return header->size - data.size();
  }

  // Inside a streamed frame: the next bytes belong to it.
  bool in_frame() const { return skip_ > 0; }

 private:
  static constexpr std::size_t streamed_max_ = 0x80000000ULL;
  std::size_t max_size_;
  std::size_t skip_ = 0;
  char streaming_ = 0;
};

}  // namespace pgdog::protocol
