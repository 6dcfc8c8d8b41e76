#include <gtest/gtest.h>

#include "protocol/messages.hpp"
#include "protocol/scanner.hpp"

namespace pgdog::protocol {
namespace {

// A typical response: RowDescription, a DataRow of `row_size` bytes, CommandComplete, RFQ.
std::string response(std::size_t row_size) {
  std::string out;
  write_row_description(out, {"a"});
  write_data_row(out, {std::string(row_size, 'x')});
  write_command_complete(out, "SELECT 1");
  write_ready_for_query(out, 'I');
  return out;
}

struct Seen {
  std::string forwarded;
  std::string types;  // of frames seen whole, in order
};

// Delivers `stream` to the scanner in chunks of `chunk` bytes, forwarding what it says is done.
Seen run(const std::string& stream, std::size_t chunk, std::size_t max = 1 << 20) {
  StreamScanner scanner(max);
  Seen seen;
  std::string buffer;
  for (std::size_t at = 0; at < stream.size(); at += chunk) {
    buffer += stream.substr(at, chunk);
    auto done = scanner.scan(buffer, [&](const Frame& f) {
      seen.types.push_back(f.type);
      return true;
    });
    EXPECT_TRUE(done);
    seen.forwarded += buffer.substr(0, *done);
    buffer.erase(0, *done);
  }
  EXPECT_TRUE(buffer.empty());
  return seen;
}

TEST(StreamScanner, EveryChunkSizeForwardsEverythingInOrder) {
  const auto stream = response(10) + response(0);
  for (std::size_t chunk = 1; chunk <= stream.size(); ++chunk) {
    auto seen = run(stream, chunk);
    EXPECT_EQ(seen.forwarded, stream) << "chunk " << chunk;
    // Rows are seen only when a read delivered them whole; every other frame always is.
    std::string whole = seen.types;
    std::erase(whole, 'D');
    EXPECT_EQ(whole, "TCZTCZ") << "chunk " << chunk;
    if (chunk == stream.size()) {
      EXPECT_EQ(seen.types, "TDCZTDCZ");
    }
  }
}

TEST(StreamScanner, HugeRowsStreamWithoutBeingBufferedWhole) {
  // A 4 MiB row through a scanner limited to 1 KiB frames: rows are streamed, so it passes,
  // and the buffer never has to hold it.
  const auto stream = response(4 << 20);
  StreamScanner scanner(1024);
  std::string buffer;
  std::string forwarded;
  std::size_t largest_buffer = 0;
  std::string types;
  for (std::size_t at = 0; at < stream.size(); at += 65536) {
    buffer += stream.substr(at, 65536);
    largest_buffer = std::max(largest_buffer, buffer.size());
    auto done = scanner.scan(buffer, [&](const Frame& f) {
      types.push_back(f.type);
      return true;
    });
    ASSERT_TRUE(done);
    forwarded += buffer.substr(0, *done);
    buffer.erase(0, *done);
  }
  EXPECT_EQ(forwarded, stream);
  EXPECT_EQ(types, "TCZ");  // the row was never whole in the buffer
  EXPECT_LE(largest_buffer, 65536U + 64);
}

TEST(StreamScanner, OversizedNonStreamedFrameIsAnError) {
  std::string big;
  write_command_complete(big, std::string(2000, 'x'));
  StreamScanner scanner(1024);
  auto done = scanner.scan(big.substr(0, 10), [](const Frame&) { return true; });
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error(), Error::message_too_large);
}

TEST(StreamScanner, StopsAfterTheFrameTheCallbackRejects) {
  const auto stream = response(1) + response(1);
  StreamScanner scanner(1 << 20);
  auto done = scanner.scan(stream, [](const Frame& f) { return f.type != 'Z'; });
  ASSERT_TRUE(done);
  EXPECT_EQ(*done, response(1).size());
}

TEST(StreamScanner, GarbageLengthIsAnError) {
  std::string bad("Z\0\0\0\1", 5);
  StreamScanner scanner(1 << 20);
  EXPECT_FALSE(scanner.scan(bad, [](const Frame&) { return true; }));
}

}  // namespace
}  // namespace pgdog::protocol
