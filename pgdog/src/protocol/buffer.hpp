#pragma once

#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>

namespace pgdog::protocol {

// A read buffer: bytes arrive at the back (prepare + commit) and frames are consumed from the
// front. It grows only as far as bytes actually arrive, so a peer that declares a huge length
// and sends nothing costs nothing; memory is taken on first use and can be given back when
// empty, so an idle connection holds none.
class Buffer {
 public:
  static constexpr std::size_t kDefaultCapacity = 16 * 1024;

  Buffer() = default;
  // `initial`: the first allocation (more when a read needs more); small for client buffers,
  // which mostly carry small queries.
  explicit Buffer(std::size_t initial) : initial_(initial) {}
  // Starts in `local` (memory of the owner, which outlives the buffer) and moves to the heap
  // only when more is needed; release() comes back to it. A client between transactions reads
  // its next query there: no allocation per transaction, no heap memory while idle.
  explicit Buffer(std::span<char> local)
      : initial_(local.size()), cap_(local.size()), data_(local.data()), local_(local) {}
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  std::string_view readable() const { return {data_ + begin_, end_ - begin_}; }
  std::size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }
  std::size_t capacity() const { return cap_; }

  void consume(std::size_t n) {
    begin_ += n;
    if (begin_ == end_) begin_ = end_ = 0;
  }

  // Writable space of at least `min_free` bytes at the back.
  std::span<char> prepare(std::size_t min_free = 4096) {
    if (data_ == nullptr) {
      cap_ = min_free > initial_ ? min_free : initial_;
      heap_.reset(new char[cap_]);
      data_ = heap_.get();
    }
    if (cap_ - end_ < min_free) {
      if (begin_ > 0) {
        std::memmove(data_, data_ + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
      }
      if (cap_ - end_ < min_free) grow(end_ + min_free);
    }
    return {data_ + end_, cap_ - end_};
  }
  void commit(std::size_t n) { end_ += n; }

  // Gives the memory back when nothing is buffered (an idle connection).
  void release() {
    if (begin_ != end_) return;
    heap_.reset();
    data_ = local_.data();
    cap_ = local_.size();
    begin_ = end_ = 0;
  }

  // Gives back memory after a large message, so a burst does not pin it for the connection's life.
  void shrink_if_larger(std::size_t limit = 4 * kDefaultCapacity) {
    if (cap_ > limit && begin_ == end_) release();
  }

 private:
  void grow(std::size_t need) {
    std::size_t cap = cap_ * 2;
    while (cap < need) cap *= 2;
    std::unique_ptr<char[]> fresh(new char[cap]);
    std::memcpy(fresh.get(), data_ + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
    heap_ = std::move(fresh);
    data_ = heap_.get();
    cap_ = cap;
  }

  std::size_t initial_ = kDefaultCapacity;
  std::size_t cap_ = 0;
  char* data_ = nullptr;  // heap_, local_, or nothing yet
  std::unique_ptr<char[]> heap_;
  std::span<char> local_;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

}  // namespace pgdog::protocol
