#include <gtest/gtest.h>

#include "protocol/frame.hpp"
#include "protocol/messages.hpp"

namespace pgdog::protocol {
namespace {

constexpr std::size_t kMax = 1 << 20;

std::string query(std::string_view sql) {
  std::string out;
  write_query(out, sql);
  return out;
}

// Feeds `stream` to the framer in two reads split at `split`, as a socket might deliver it, and
// returns every frame's raw bytes in order.
std::vector<std::string> frames_split_at(const std::string& stream, std::size_t split) {
  std::vector<std::string> frames;
  std::string buffer;
  for (auto chunk : {stream.substr(0, split), stream.substr(split)}) {
    buffer += chunk;
    while (true) {
      auto f = next_frame(buffer, kMax);
      if (!f) {
        EXPECT_EQ(f.error(), Error::need_more);
        break;
      }
      frames.emplace_back(f->raw);
      buffer.erase(0, f->size());
    }
  }
  EXPECT_TRUE(buffer.empty());
  return frames;
}

TEST(Frame, QueryRoundTrip) {
  auto q = query("select 1");
  auto f = next_frame(q, kMax);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->type, 'Q');
  EXPECT_EQ(f->size(), q.size());
  auto sql = decode_query(f->body);
  ASSERT_TRUE(sql);
  EXPECT_EQ(*sql, "select 1");
}

TEST(Frame, SplitAtEveryByteBoundary) {
  const std::string one = query("select 1");
  for (std::size_t split = 0; split <= one.size(); ++split) {
    auto frames = frames_split_at(one, split);
    ASSERT_EQ(frames.size(), 1U) << "split at " << split;
    EXPECT_EQ(frames[0], one);
  }
}

TEST(Frame, TwoMessagesInOneReadAndSplitAnywhere) {
  const std::string a = query("select 1");
  std::string b;
  write_empty(b, fe::kSync);
  const std::string stream = a + b + a;
  for (std::size_t split = 0; split <= stream.size(); ++split) {
    auto frames = frames_split_at(stream, split);
    ASSERT_EQ(frames.size(), 3U) << "split at " << split;
    EXPECT_EQ(frames[0], a);
    EXPECT_EQ(frames[1], b);
    EXPECT_EQ(frames[2], a);
  }
}

std::string header(char type, std::uint32_t len) {
  std::string h(5, '\0');
  h[0] = type;
  write_u32(h.data() + 1, len);
  return h;
}

TEST(Frame, BadLengths) {
  EXPECT_EQ(peek_header(header('Q', 0), kMax).error(), Error::bad_length);
  EXPECT_EQ(peek_header(header('Q', 3), kMax).error(), Error::bad_length);
  EXPECT_EQ(peek_header(header('Q', 0x80000000U), kMax).error(), Error::bad_length);
  EXPECT_EQ(peek_header(header('Q', 0xffffffffU), kMax).error(), Error::bad_length);
  // 1 GiB is rejected from the header alone: nobody allocates it.
  EXPECT_EQ(peek_header(header('Q', 1U << 30), kMax).error(), Error::message_too_large);
  EXPECT_TRUE(peek_header(header('S', 4), kMax));
  EXPECT_EQ(peek_header(header('S', 4), kMax)->size, 5U);
  EXPECT_EQ(peek_header(std::string("Q\0\0", 3), kMax).error(), Error::need_more);
}

TEST(Frame, MaxSizeIsInclusive) {
  auto h = header('d', 100);
  EXPECT_TRUE(peek_header(h, 101));
  EXPECT_EQ(peek_header(h, 100).error(), Error::message_too_large);
}

}  // namespace
}  // namespace pgdog::protocol
