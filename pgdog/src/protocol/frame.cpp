#include "protocol/frame.hpp"

#include <string>

namespace pgdog::protocol {

namespace {

class Category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "pgdog.protocol"; }
  std::string message(int ev) const override {
    switch (static_cast<Error>(ev)) {
      case Error::need_more:
        return "incomplete message";
      case Error::bad_length:
        return "invalid message length";
      case Error::message_too_large:
        return "message exceeds max_message_size";
      case Error::bad_startup_code:
        return "unsupported protocol version or request code";
      case Error::malformed:
        return "malformed message";
    }
    return "unknown protocol error";
  }
};

}  // namespace

const boost::system::error_category& category() {
  static const Category instance;
  return instance;
}

boost::system::result<FrameHeader> peek_header(std::string_view data, std::size_t max_size) {
  if (data.size() < kHeaderSize) return Error::need_more;
  const std::uint32_t len = read_u32(data.data() + 1);
  // The length counts itself, so 4 is an empty body; anything above 2^31 is negative for
  // PostgreSQL and is rejected the same way.
  if (len < 4 || len > 0x7fffffffU) return Error::bad_length;
  const std::size_t size = std::size_t{len} + 1;
  if (size > max_size) return Error::message_too_large;
  return FrameHeader{data[0], size};
}

boost::system::result<Frame> next_frame(std::string_view data, std::size_t max_size) {
  auto header = peek_header(data, max_size);
  if (!header) return header.error();
  if (data.size() < header->size) return Error::need_more;
  return Frame{header->type, data.substr(kHeaderSize, header->size - kHeaderSize),
               data.substr(0, header->size)};
}

}  // namespace pgdog::protocol
