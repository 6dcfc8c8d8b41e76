#include "protocol/buffer.hpp"

#include <array>
#include <cstring>
#include <string>

#include <gtest/gtest.h>

namespace pgdog::protocol {
namespace {

void put(Buffer& b, std::string_view s) {
  auto space = b.prepare(s.size());
  ASSERT_GE(space.size(), s.size());
  std::memcpy(space.data(), s.data(), s.size());
  b.commit(s.size());
}

TEST(Buffer, StartsInLocalStorageAndReadsThere) {
  std::array<char, 16> local{};
  Buffer b{std::span<char>(local)};
  auto space = b.prepare(1);
  EXPECT_EQ(space.data(), local.data());
  EXPECT_EQ(space.size(), local.size());
  put(b, "hello");
  EXPECT_EQ(b.readable(), "hello");
  EXPECT_EQ(b.readable().data(), local.data());
}

TEST(Buffer, MovesToTheHeapKeepingBytesAndComesBackOnRelease) {
  std::array<char, 16> local{};
  Buffer b{std::span<char>(local)};
  put(b, "0123456789");
  b.consume(4);
  put(b, std::string(100, 'x'));  // more than the local storage holds
  EXPECT_EQ(b.readable(), "456789" + std::string(100, 'x'));
  EXPECT_NE(b.readable().data(), local.data());
  EXPECT_GE(b.capacity(), 106u);

  b.release();  // not empty: keeps everything
  EXPECT_EQ(b.size(), 106u);
  b.consume(b.size());
  b.release();
  EXPECT_EQ(b.capacity(), local.size());
  EXPECT_EQ(b.prepare(1).data(), local.data());
}

TEST(Buffer, WithoutLocalStorageAllocatesOnFirstUseAndFreesOnRelease) {
  Buffer b{64};
  EXPECT_EQ(b.capacity(), 0u);
  put(b, "abc");
  EXPECT_EQ(b.capacity(), 64u);
  b.consume(3);
  b.release();
  EXPECT_EQ(b.capacity(), 0u);
  put(b, std::string(200, 'y'));
  EXPECT_EQ(b.size(), 200u);
}

}  // namespace
}  // namespace pgdog::protocol
